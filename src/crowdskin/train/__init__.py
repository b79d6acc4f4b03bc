"""Training stage: folds, image cache, input pipeline, models, resumable jobs, MLflow.

Modules, in the order a job uses them:

- `settings`: the slice of the config each job receives (its science settings, nothing else).
- `splits`: which lesions are trainable, and the 5 folds (`results/splits/folds.parquet`).
- `tasks`: the task grid derived from config alone (each kind's tasks), so the DAG is built
  before any data exists.
- `kinds`: one class per kind of model (baseline, multitask, multihead, disagreement, random,
  crowdsim-retrain, crowdsim-soft, crowdsim-incremental), registered by name: the tables its jobs
  read, its examples and heads, its start, its place in the tables and comparisons.
- `cache`: every image resized once to the input size (`results/train/cache/`).
- `examples`: one job's table of examples (split, label, per head its target and availability flag).
- `backend`: which Keras 3 backend (tensorflow, jax, torch) the process trains with, chosen
  before keras is imported.
- `pipeline`: input with parallel loading, augmentation (the study's settings) and prefetch:
  `tf.data` on TensorFlow, a `keras.utils.PyDataset` on any backend.
- `backbones`: the registry of backbones (builder, preprocessing, minimum input size, ImageNet
  weights file), without importing Keras.
- `models`: Keras 3 models (a registry backbone + heads), the masked multi-task loss.
- `weights`: `none | imagenet | <file>` without any silent fallback.
- `runtime`: per backend: threads, GPU memory growth, mixed precision, XLA/jit, determinism, GPUs.
- `loop`: one (task, backbone, fold) job as steps (examples, fit, predict, write, log), resumable
  through Keras' BackupAndRestore and CSVLogger.
- `job`: a job as a plain request (its inputs, settings and execution), in-process or in `worker`.
- `tracking`: MLflow logging that never loses a finished training.
- `summary`: `runs.csv` and test AUC per (task, backbone) over the folds.
- `bench`: input-pipeline and training-step throughput; `bench_backends`: per-backend fixed costs
  on CPU and training throughput on a GPU.

Only `loop`, `pipeline`, `models`, `runtime` and the benchmarks import Keras and its backend
(TensorFlow: about 4 s per process).
"""

"""Process settings per Keras backend, applied once before any model is built: threads, GPU memory,
precision, XLA/jit, determinism and several GPUs.

| setting | tensorflow | jax | torch |
| --- | --- | --- | --- |
| threads | intra/inter-op pools | XLA CPU thread pool (XLA_FLAGS, set by `backend.select`) | torch.set_num_threads |
| mixed precision | Keras policy `mixed_float16` (`true`) or `mixed_bfloat16` | same policies | same policies |
| xla | `jit_compile` (XLA) | always compiled: a JAX train step is one jitted function | `jit_compile` (torch.compile) |
| deterministic | enable_op_determinism | CPU as is; GPU: `--xla_gpu_deterministic_ops` | use_deterministic_algorithms |
| several GPUs | MirroredStrategy | keras.distribution.DataParallel | refused: one GPU, with a warning |
| compile cache | XLA clusters, with `xla` | every jitted program | torch.compile's, with `xla` |

The compile cache (crowdskin.train.compile_cache) is turned on here, before the backend compiles
anything, in a job's own process and in each job a warm worker forks alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowdskin.train import compile_cache as compile_caches

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    strategy: Any  # TensorFlow's distribution strategy; None on the other backends
    n_gpus: int
    jit_compile: bool | str
    mixed_precision: bool | str
    backend: str = "tensorflow"
    compile_cache: Path | None = None  # the backend's cache folder; None where nothing is cached

    def scope(self) -> Any:
        """Where variables are created: the strategy's scope on TensorFlow, nothing elsewhere."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def precision_policy(mixed_precision: bool | str) -> str:
    """`train.mixed_precision` as a Keras dtype policy: true is float16 (the TensorFlow GPU default,
    with loss scaling), "bfloat16" needs no loss scaling and suits recent GPUs and TPUs."""
    if mixed_precision in (False, None, "false"):
        return "float32"
    return "mixed_bfloat16" if mixed_precision == "bfloat16" else "mixed_float16"


def configure(
    *,
    backend: str = "tensorflow",
    threads: int = 1,
    mixed_precision: bool | str = False,
    xla: bool = False,
    deterministic: bool = False,
    seed: int = 0,
    compile_cache: str | Path | None = None,
) -> Runtime:
    """Thread pools from the job's `threads`, GPU memory growth, precision, determinism, strategy.

    Must run before the backend executes its first op (TensorFlow's thread pools are fixed after that).
    `compile_cache`: the folder of `execution.train.compile_cache` (None: compile in every job).
    """
    if backend == "tensorflow":
        cache_folder = compile_caches.enable(backend, compile_cache, xla=xla)
        runtime = _configure_tensorflow(threads=threads, mixed_precision=mixed_precision, xla=xla,
                                        deterministic=deterministic, seed=seed)
        runtime.compile_cache = cache_folder
        return runtime
    from crowdskin.train.backend import select

    select(backend, threads=threads, deterministic=deterministic)
    # After select (XLA_FLAGS are read when jax is imported), before keras builds or seeds anything.
    cache_folder = compile_caches.enable(backend, compile_cache, xla=bool(xla) or backend == "jax")
    import keras

    if backend == "jax":
        import jax

        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        if len(gpus) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=gpus))
        # Keras' JAX trainer without jit runs op by op (orders of magnitude slower): always compiled.
        jit_compile: bool | str = True
    elif backend == "torch":
        import torch

        try:
            torch.set_num_threads(threads)
            torch.set_num_interop_threads(max(1, min(threads, 2)))
        except RuntimeError:  # the inter-op pool is fixed once torch ran its first parallel op
            log.info("torch already initialised; keeping its inter-op pool")
        gpus = list(range(torch.cuda.device_count()))
        if len(gpus) > 1:
            log.warning("Keras' torch backend trains on one GPU (it has no data-parallel fit); %d visible, "
                        "using the first: set CUDA_VISIBLE_DEVICES or choose train.backend: tensorflow or jax",
                        len(gpus))
            gpus = gpus[:1]
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        jit_compile = bool(xla)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    policy = precision_policy(mixed_precision)
    if policy != "float32" and not gpus:
        log.warning("mixed precision asked for on a CPU-only machine: %s on CPU is slow", policy)
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(seed)
    log.info("%s: %d GPU(s), %d thread(s), policy %s, jit %s, deterministic %s",
             backend, len(gpus), threads, policy, jit_compile, deterministic)
    return Runtime(strategy=None, n_gpus=len(gpus), jit_compile=jit_compile, mixed_precision=mixed_precision,
                   backend=backend, compile_cache=cache_folder)


def _configure_tensorflow(*, threads: int, mixed_precision: bool | str, xla: bool, deterministic: bool,
                          seed: int) -> Runtime:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    # Scheduled jobs share the machine: more threads than the job was given only slows its neighbours.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(threads, 2)))
    except RuntimeError:  # the runtime already runs (a second job in one process, e.g. tests)
        log.info("TensorFlow already initialised; keeping its thread pools")
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Several jobs may share one GPU; without growth the first would take all memory.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            log.info("GPU already initialised; memory growth unchanged")
    policy = precision_policy(mixed_precision)
    if policy != "float32" and not gpus:
        log.warning("mixed precision asked for on a CPU-only machine: float16 on CPU is slow")
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    log.info("TensorFlow: %d GPU(s), %d thread(s), mixed precision %s, XLA %s, deterministic %s",
             len(gpus), threads, mixed_precision, xla, deterministic)
    return Runtime(strategy=strategy, n_gpus=len(gpus), jit_compile=xla, mixed_precision=mixed_precision)

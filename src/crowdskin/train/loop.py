"""One training job (task, backbone, fold) as steps: examples -> fit -> predict -> write -> log.

Resume: `<out>/checkpoint/` is not a Snakemake output, so `--rerun-incomplete` keeps it. Inside,
Keras' `BackupAndRestore` keeps the weights and optimizer state of the last finished epoch and
`CSVLogger(append=True)` the per-epoch history; a re-run whose fingerprint (the job's science
settings, data and split) matches continues at the next epoch and ends with the same epochs, and
with the same weights as a job never stopped: it goes on with the next batches of the training
stream, the augmentation's next random draws, and the random states of the layers inside the model
(kept in the checkpoint per epoch: Keras' weights leave them out). A job
that keeps its model also keeps the finished model there (hard-linked to model.keras) until
metrics.json exists, so a kill while writing outputs or logging does not train again; a job that
keeps no model trains again after such a kill. Neither depends on how fast the machine is.
The MLflow run's id goes into `state.json` as soon as the run is opened, before anything is logged
to it: an attempt stopped while logging (Ctrl-C, a kill) leaves that one run, which the next attempt
completes, so a job that was stopped any number of times still has one run.

Order of outputs: predictions, history, model, then MLflow, then metrics.json (with the run id,
or the logging error) last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crowdskin.files import link_or_copy
from crowdskin.train.examples import (
    ExampleNotes,
    balanced_class_weights,
    hard_labels,
    head_arrays,
    head_columns,
    trained_labels,
)
from crowdskin.train.kinds import AnnotatorAnswers, kind_of
from crowdskin.train.tasks import Task

log = logging.getLogger(__name__)


@dataclass
class JobSpec:
    task: Task
    backbone: str
    fold: int
    settings: dict[str, Any]  # the job's science settings (crowdskin.train.settings.job_settings)
    seed: int
    split_hash: str
    out_dir: Path
    weights: Path | None = None
    base_model: Path | None = None  # crowdsim-incremental: the fold's trained baseline
    threads: int = 1
    save_model: bool = True
    check: bool = False  # a backbone check (crowdskin.train.settings.check_settings), not a grid job
    data_version: str = ""
    mlflow_uri: str | None = None
    experiment: str = "default"
    mlflow_namespace: str = ""  # whose run it is in a shared store (crowdskin.train.tracking.run_namespace)
    # The run goes into metrics.json's `mlflow_pending` for the local train_summary job to log
    # (crowdskin.train.tracking.defer_logging says when: a cluster job with a file-based store).
    defer_mlflow: bool = False
    steps_per_execution: int = 1  # training steps per compiled call (execution.train.steps_per_execution)
    compile_cache: str | None = None  # execution.train.compile_cache: how it runs, never its result
    execution_tags: dict[str, str] = field(default_factory=dict)  # how it ran: MLflow tags, never params


@dataclass
class FitResult:
    model: Any
    history: pd.DataFrame
    train_seconds: float
    class_weight: dict[int, float]
    batch_size: int
    backend: str = "tensorflow"
    compile_cache: Path | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    jax_counts_before: Any = None  # crowdskin.train.compile_cache.JaxCompileCounts at the job's start


class Checkpoint:
    """`<out>/checkpoint/`: the resume state of one job, valid only for one fingerprint."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = directory
        self.backup_dir = directory / "backup"
        self.history_csv = directory / "history.csv"
        self.final_model = directory / "final.keras"
        self.state_file = directory / "state.json"
        state = json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}
        if state and state.get("fingerprint") != fingerprint:
            log.warning("checkpoint in %s is from other settings or data; starting afresh", directory)
            shutil.rmtree(directory)
            state = {}
        directory.mkdir(parents=True, exist_ok=True)
        self.state = {**state, "fingerprint": fingerprint}
        _write_json(self.state_file, self.state)

    @property
    def mlflow_run_id(self) -> str | None:
        """The MLflow run an earlier attempt of this job opened, to complete rather than open another."""
        return self.state.get("mlflow_run_id")

    def keep_mlflow_run(self, run_id: str) -> None:
        self.state["mlflow_run_id"] = run_id
        _write_json(self.state_file, self.state)

    def epochs_done(self) -> int:
        return _epochs_recorded(self.backup_dir)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _frame_hash(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values.tobytes()).hexdigest()


def fingerprint(spec: JobSpec, examples: pd.DataFrame, annotators: AnnotatorAnswers | None = None) -> str:
    """What must be equal for a checkpoint to be resumed: science settings, data, split, examples
    and the annotators' answers."""
    payload = json.dumps({
        "task": spec.task.name, "backbone": spec.backbone, "fold": spec.fold, "settings": spec.settings,
        "seed": spec.seed, "split": spec.split_hash, "data": spec.data_version,
        "base_model": str(spec.base_model) if spec.base_model else None,
        "examples": _frame_hash(examples),
        **({"annotators": [_frame_hash(annotators.annotators), _frame_hash(annotators.answers)]}
           if annotators is not None else {}),
    }, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def cached_examples(examples: pd.DataFrame, cache_index: pd.DataFrame, notes: ExampleNotes) -> pd.DataFrame:
    """The examples with their cache row; those the cache could not read are reported, not dropped silently."""
    rows = examples.merge(cache_index[["image_id", "row", "reason"]], on="image_id", how="left")
    unreadable = rows["row"].isna() | (rows["row"] < 0)
    if unreadable.any():
        notes.warnings.append(f"{int(unreadable.sum())} examples have no cached image and were left out: "
                              + "; ".join(rows.loc[unreadable, "reason"].fillna("not in cache").astype(str).head(3)))
        notes.counts["uncached"] = int(unreadable.sum())
    kept = rows[~unreadable].drop(columns="reason").reset_index(drop=True)
    kept["row"] = kept["row"].astype(np.int64)
    return kept


def _seed_states(model: Any) -> list[Any]:
    """The random states of the model's layers (augmentation inside it): Keras' weights leave them out."""
    return [generator.state for layer in model._flatten_layers() for generator in layer._seed_generators]


def _seed_file(backup_dir: Path, epochs_done: int) -> Path:
    return backup_dir / f"seed_states_{epochs_done}.npz"


def restore_seed_states(model: Any, backup_dir: Path, epochs_done: int) -> None:
    """Put back the random states a job's model had after `epochs_done` epochs, so that a resumed
    job draws the augmentation an uninterrupted one would."""
    path = _seed_file(backup_dir, epochs_done)
    if epochs_done and path.is_file():
        with np.load(path) as saved:
            for index, state in enumerate(_seed_states(model)):
                state.assign(saved[f"state_{index}"])


def _weights_file(backup_dir: Path, epochs_done: int) -> Path:
    return backup_dir / f"epoch_{epochs_done}.weights.h5"  # Keras wants the .weights.h5 suffix


def _backup_callback(keras: Any, backup_dir: Path, epochs: int) -> Any:
    class EpochBackup(keras.callbacks.BackupAndRestore):
        """Keras' BackupAndRestore without the last epoch's backup: the finished model is the job's
        to keep or not, and a one-epoch job would otherwise write a backup only to delete it.

        Keras writes the weights and then the epoch record over the last ones in place: a Ctrl-C or
        a kill during the first backup left a truncated weights file and nothing to fall back to
        (the job then failed for good), and one during a later backup could pair one epoch's weights
        with another's record. Here every file of an epoch (its random states, its weights) is
        written under its own name and renamed whole, and the epoch record, renamed last, commits
        them: a kill anywhere leaves the previous epoch's complete set."""

        def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
            done = _epochs_recorded(backup_dir)
            for leftover in backup_dir.glob("*.partial*"):
                leftover.unlink(missing_ok=True)
            if not done:
                return
            weights = _weights_file(backup_dir, done)
            if not weights.is_file():  # a backup of the layout Keras writes itself
                weights = backup_dir / "latest.weights.h5"
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)  # its state is in the file
            self.model.load_weights(str(weights))
            self.model._initial_epoch = done

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if epoch + 1 >= epochs:
                return
            done = epoch + 1
            backup_dir.mkdir(parents=True, exist_ok=True)
            states = {f"state_{i}": np.asarray(s.value) for i, s in enumerate(_seed_states(self.model))}
            tmp = backup_dir / "seed_states.partial.npz"
            np.savez(tmp, **states)
            os.replace(tmp, _seed_file(backup_dir, done))
            partial = backup_dir / "epoch.partial.weights.h5"
            self.model.save_weights(str(partial), overwrite=True)
            os.replace(partial, _weights_file(backup_dir, done))
            _write_json(backup_dir / "training_metadata.json", {"epoch": done, "batch": 0})
            for older in (*backup_dir.glob("epoch_*.weights.h5"), *backup_dir.glob("seed_states_*.npz"),
                          backup_dir / "latest.weights.h5"):
                if older.name not in (_weights_file(backup_dir, done).name, _seed_file(backup_dir, done).name):
                    older.unlink(missing_ok=True)

    return EpochBackup(str(backup_dir))


def _epochs_recorded(backup_dir: Path) -> int:
    metadata = backup_dir / "training_metadata.json"
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.is_file() else 0


def read_history(path: Path) -> pd.DataFrame:
    """CSVLogger's rows as history.csv: epochs counted from 1, one row per epoch (a kill between
    the logger's row and the backup repeats an epoch: the re-run's row wins), one AUC name."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame({"epoch": pd.Series([], dtype=int)})
    history = pd.read_csv(path)
    history = history.drop_duplicates("epoch", keep="last").sort_values("epoch", ignore_index=True)
    history["epoch"] = history["epoch"].astype(int) + 1
    # Keras names a single-output dict model's metrics without the output prefix; one name here.
    history = history.rename(columns=lambda name: name.replace("label_auc", "auc"))
    return history[["epoch", *sorted(c for c in history.columns if c != "epoch")]]


def steps_per_call(requested: int, steps_per_epoch: int, backend: str) -> tuple[int, str | None]:
    """The training steps per compiled call a job runs, and why it is not `requested` (None if it is).

    Keras runs whole calls: with an endless training stream, an epoch of 5 steps at 2 per call
    trains 6 steps, and every later epoch starts one batch late. The largest divisor of the
    epoch's steps that is at most `requested` keeps an epoch at exactly its steps, so the batches,
    their order and the weights are those of one step per call. Keras refuses more than one on torch.
    """
    if requested < 1:
        raise ValueError(f"steps_per_execution must be at least 1, not {requested}")
    if requested == 1:
        return 1, None
    if backend == "torch":
        return 1, "Keras' torch trainer runs one step per call"
    runs = max(d for d in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % d == 0)
    if runs == requested:
        return runs, None
    return runs, f"an epoch's {steps_per_epoch} step(s) must be a whole number of calls"


def fit(spec: JobSpec, examples: pd.DataFrame, cache_array: np.ndarray, checkpoint: Checkpoint,
        annotators: AnnotatorAnswers | None = None) -> FitResult:
    """Build (or resume) the model and train it; the model returned is the finished one. A kind
    with an annotator head learns `annotators`' answers through it."""
    from crowdskin.train.runtime import configure

    settings = spec.settings
    started = time.time()
    backend = settings.get("backend", "tensorflow")
    runtime = configure(backend=backend, threads=spec.threads, mixed_precision=settings["mixed_precision"],
                        xla=settings["xla"], deterministic=settings["deterministic"], seed=spec.seed + spec.fold,
                        compile_cache=spec.compile_cache)
    import keras

    from crowdskin.train.compile_cache import jax_counts

    counts_before = jax_counts() if backend == "jax" else None
    timing = {"backend": backend, "compile_cache": runtime.compile_cache, "jax_counts_before": counts_before}

    from crowdskin.train import models
    from crowdskin.train.pipeline import batches

    log.info("Keras on %s ready after %.1f s", backend, time.time() - started)
    train = examples[examples["split"] == "train"]
    val = examples[examples["split"] == "val"]
    class_weight = (balanced_class_weights(trained_labels(train, spec.task)) if settings["class_weight"] == "balanced"
                    and len(train) else {0: 1.0, 1: 1.0})
    batch = settings["batch_size"] * max(1, runtime.n_gpus)

    if checkpoint.final_model.is_file():
        log.info("resuming from checkpoint: training finished before")
        model = models.load_saved_model(checkpoint.final_model)
        return FitResult(model, read_history(checkpoint.history_csv), 0.0, class_weight, batch, **timing)

    heads = kind_of(spec.task.kind).heads(spec.task)
    augment_settings = settings["augment"]
    augment = models.augmentation(augment_settings, seed=spec.seed) if augment_settings["enabled"] else None
    in_pipeline = augment if augment_settings["placement"] == "pipeline" else None
    in_model = augment if augment_settings["placement"] == "model" else None

    def targets(part: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        arrays = head_arrays(part, heads)
        if annotators is not None:
            arrays[models.ANNOTATOR_HEAD] = annotators.matrix(part["image_id"].astype(str).tolist())
        return arrays

    def dataset(part: pd.DataFrame, training: bool, start: int = 0) -> Any:
        return batches(cache_array, part["row"].to_numpy(), trained_labels(part, spec.task), targets(part),
                       batch_size=batch, training=training, seed=spec.seed + spec.fold,
                       augment=in_pipeline if training else None, deterministic=settings["deterministic"],
                       start=start, class_weight=class_weight)

    steps_per_execution, reduced_because = steps_per_call(spec.steps_per_execution, settings["steps_per_epoch"],
                                                          backend)
    if reduced_because:
        log.info("steps_per_execution %d runs as %d: %s", spec.steps_per_execution, steps_per_execution,
                 reduced_because)
    log.info("training %d step(s) per compiled call", steps_per_execution)
    with runtime.scope():
        starts_from = kind_of(spec.task.kind).starts_from
        if starts_from is not None:
            if spec.base_model is None:
                raise ValueError(f"{spec.task.name} fine-tunes the fold's {starts_from} model; none was given")
            model = models.load_saved_model(spec.base_model)
            missing = [head for head in heads if models.head_output(head) not in model.output]
            if missing:
                raise ValueError(f"{spec.task.name} fine-tunes {spec.base_model}, which has no head for {missing}")
        else:
            head = None if annotators is None else {
                "model": annotators.model, "n": len(annotators.annotators), **settings["annotators"]}
            model = models.build_model(spec.backbone, settings["input_size"], heads=heads,
                                       weights=spec.weights, preprocess=settings["preprocess"], augment=in_model,
                                       annotators=head)
        models.compile_model(model, optimizer=models.make_optimizer(settings["optimizer"], settings["learning_rate"]),
                             loss_weights=settings.get("loss_weights"),
                             jit_compile=runtime.jit_compile, run_eagerly=settings["run_eagerly"],
                             steps_per_execution=steps_per_execution,
                             annotator_weights=None if annotators is None
                             else annotators.annotators["weight"].astype(float).tolist())

    epochs = settings["epochs"]
    done = checkpoint.epochs_done()
    if done:
        log.info("resuming from checkpoint: %d epoch(s) done", done)
    fit_started = time.time()
    epoch_seconds: list[float] = []
    if len(train):
        validation_steps = min(settings["validation_steps"], math.ceil(len(val) / batch))
        callbacks = [keras.callbacks.CSVLogger(str(checkpoint.history_csv), append=True),
                     _backup_callback(keras, checkpoint.backup_dir, epochs), _epoch_timer(keras, epoch_seconds)]
        # Only the batches validation reads: with several steps per call Keras reads on to the end
        # of a call, so the data, not validation_steps, must end where validation does.
        validated = val.iloc[:validation_steps * batch]
        # A resumed job goes on with the batches and random draws an uninterrupted one would use.
        restore_seed_states(model, checkpoint.backup_dir, done)
        model.fit(dataset(train, True, start=done * settings["steps_per_epoch"]), epochs=epochs,
                  steps_per_epoch=settings["steps_per_epoch"],
                  validation_data=dataset(validated, False), validation_steps=validation_steps,
                  callbacks=callbacks, shuffle=False, verbose=2)
    train_seconds = time.time() - fit_started
    if spec.save_model:
        _save_without_optimizer(model, checkpoint.final_model)
    log.info("fit %.1f s%s", train_seconds, "" if spec.save_model else " (no model kept)")
    return FitResult(model, read_history(checkpoint.history_csv), train_seconds, class_weight, batch,
                     **timing, epoch_seconds=epoch_seconds)


def _epoch_timer(keras: Any, seconds: list[float]) -> Any:
    class EpochTimer(keras.callbacks.Callback):
        """Each epoch's wall time, validation included: the first one's excess is compiling."""

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            seconds.append(time.perf_counter() - self.started)

    return EpochTimer()


def compile_report(result: FitResult) -> dict[str, Any]:
    """metrics.json's `compile`: what compiling cost this job, from its own timings (the first epoch
    beyond a steady one) and, on JAX, the compiler's own counts from the job's start to its predictions."""
    from crowdskin.train.compile_cache import epoch_compile_seconds, jax_counts

    counts = jax_counts().minus(result.jax_counts_before) if result.jax_counts_before is not None else None
    estimate = epoch_compile_seconds(result.epoch_seconds)
    report = {"cache": str(result.compile_cache) if result.compile_cache else None,
              "epoch_seconds": [round(value, 3) for value in result.epoch_seconds],
              "first_epoch_excess_seconds": None if estimate is None else round(estimate, 3),
              "jax": counts.as_dict() if counts is not None else None}
    epochs = (f"first epoch {result.epoch_seconds[0]:.1f} s, {estimate:.1f} s beyond a steady one"
              if estimate is not None else "one epoch: no steady epoch to compare")
    jax = (f"; JAX: {counts.programs} programs, {counts.backend_compile_seconds:.1f} s compiling or loading them "
           f"({counts.cache_hits} from the cache, {counts.cache_writes} written), "
           f"tracing {counts.trace_seconds:.1f} s, lowering {counts.lower_seconds:.1f} s" if counts is not None else "")
    log.info("compile: %s%s; cache %s", epochs, jax, report["cache"] or "off")
    return report


def _save_without_optimizer(model: Any, path: Path) -> None:
    """model.keras for inference and fine-tuning: the optimizer state would double the file."""
    optimizer = model.optimizer
    model.optimizer = None
    try:
        tmp = path.with_name(path.stem + ".tmp.keras")
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        model.optimizer = optimizer


def train_job(
    spec: JobSpec,
    examples: pd.DataFrame,
    notes: ExampleNotes,
    cache_array: np.ndarray,
    cache_index: pd.DataFrame,
    annotators: AnnotatorAnswers | None = None,
) -> dict[str, Any]:
    """Train, predict, write the outputs and log to MLflow. Returns the metrics.json payload.
    A kind with an annotator head also writes annotators.parquet (`learned_annotators`)."""
    started = time.time()
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    examples = cached_examples(examples, cache_index, notes)
    for warning in notes.warnings:
        log.warning("%s/%s/fold%d: %s", spec.task.name, spec.backbone, spec.fold, warning)
    checkpoint = Checkpoint(out / "checkpoint", fingerprint(spec, examples, annotators))

    result = fit(spec, examples, cache_array, checkpoint, annotators)
    predict_started = time.time()
    heads = kind_of(spec.task.kind).heads(spec.task)
    predictions = predict(result.model, examples, cache_array, batch=result.batch_size, fold=spec.fold,
                          heads=heads)
    log.info("predict %.1f s", time.time() - predict_started)
    compiled = compile_report(result)
    predictions.to_parquet(out / "predictions.parquet", index=False)
    result.history.to_csv(out / "history.csv", index=False)
    if spec.save_model:
        link_or_copy(checkpoint.final_model, out / "model.keras")
    learned = None
    if annotators is not None:
        learned = learned_annotators(result.model, annotators)
        tmp = out / "annotators.parquet.tmp"
        learned.to_parquet(tmp, index=False)
        os.replace(tmp, out / "annotators.parquet")

    metrics: dict[str, Any] = {
        "task": spec.task.name, "backbone": spec.backbone, "fold": spec.fold,
        "test_auc": auc(predictions[predictions["split"] == "test"]),
        "val_auc": auc(predictions[predictions["split"] == "val"]),
        "heads": head_metrics(predictions, heads),
        "epochs": len(result.history), "split_hash": spec.split_hash,
        "class_weight": result.class_weight, "counts": notes.counts, "warnings": notes.warnings,
        "train_seconds": round(result.train_seconds, 3), "job_seconds": None, "compile": compiled,
        "mlflow_run_id": None, "mlflow_error": None,
    }
    if learned is not None:
        metrics["annotators"] = annotator_summary(learned)
    logging_started = time.time()
    metrics["mlflow_run_id"], metrics["mlflow_error"] = _log_to_mlflow(spec, metrics, result.history, out, checkpoint)
    metrics["mlflow_seconds"] = round(time.time() - logging_started, 3)
    metrics["job_seconds"] = round(time.time() - started, 3)
    _write_json(out / "metrics.json", metrics)
    checkpoint.remove()
    return metrics


def predict(model: Any, examples: pd.DataFrame, cache_array: np.ndarray, *, batch: int, fold: int,
            heads: tuple[str, ...] = ()) -> pd.DataFrame:
    """predictions.parquet: image_id, fold, split, score, label, label_source, and per annotation
    head its prediction, target and availability (`prediction_<head>`, `target_<head>`, `available_<head>`)."""
    from crowdskin.train.models import head_output
    from crowdskin.train.pipeline import batches

    rows = examples["row"].to_numpy()
    batch = max(batch, 32)
    # Whole batches only, the last one filled up with repeated rows whose outputs are dropped: a
    # partial last batch has another shape in every fold, and so another compiled program.
    padded = np.resize(rows, math.ceil(len(rows) / batch) * batch)
    data = batches(cache_array, padded, np.zeros(len(padded)), batch_size=batch, training=False, images_only=True)
    outputs = {name: np.asarray(values)[:len(rows)] for name, values in model.predict(data, verbose=0).items()}
    frame = pd.DataFrame({
        "image_id": examples["image_id"].to_numpy(), "fold": fold, "split": examples["split"].to_numpy(),
        "score": np.asarray(outputs["label"], np.float64).reshape(-1),
        "label": hard_labels(examples["label"].to_numpy()), "label_source": examples["label_source"].to_numpy(),
    })
    for head in heads:
        target_column, available_column = head_columns(head)
        frame[f"prediction_{head}"] = np.asarray(outputs[head_output(head)], np.float64).reshape(-1)
        frame[target_column] = examples[target_column].to_numpy()
        frame[available_column] = examples[available_column].to_numpy()
    return frame


def learned_annotators(model: Any, annotators: AnnotatorAnswers) -> pd.DataFrame:
    """annotators.parquet: one row per annotator of the head, with what the kind reports of them
    (their answers, loss weight, the crowd stage's estimate) and what the head learned:
    a confusion head's matrix (`confusion_<true><answer>`, rows sum to 1) and `reliability`, the
    chance their answer is the true class under equal priors; an affine head's `scale` and `bias`
    (on the standardised scores) and `bias_raw` (in the score's units)."""
    from crowdskin.train.annotators import reliability
    from crowdskin.train.models import ANNOTATOR_HEAD, head_output

    layer = model.get_layer(head_output(ANNOTATOR_HEAD))
    table = annotators.annotators.reset_index(drop=True).copy()
    table.insert(0, "annotator_model", annotators.model)
    if annotators.model == "confusion":
        confusion = np.asarray(layer.confusion(), dtype=float)
        for true in (0, 1):
            for answer in (0, 1):
                table[f"confusion_{true}{answer}"] = confusion[:, true, answer]
        table["reliability"] = reliability(confusion)
    else:
        table["scale"] = np.asarray(layer.scale(), dtype=float)
        table["bias"] = np.asarray(layer.bias(), dtype=float)
        table["bias_raw"] = table["bias"] * annotators.spread
    return table


def annotator_summary(learned: pd.DataFrame) -> dict[str, float | int | None]:
    """metrics.json's and MLflow's view of annotators.parquet: how many annotators, and how the
    learned reliabilities (or biases) rank as the estimate made without the image."""
    summary: dict[str, float | int | None] = {"n_annotators": len(learned),
                                              "n_answers": int(learned["n_answers"].sum())}
    if "reliability" in learned:
        summary["mean_reliability"] = float(learned["reliability"].mean()) if len(learned) else None
        summary["spearman_dawid_skene"] = rank_correlation(learned["reliability"],
                                                           learned["dawid_skene_reliability"])
    else:
        summary["sd_bias_raw"] = float(learned["bias_raw"].std(ddof=0)) if len(learned) else None
    return summary


def head_metrics(predictions: pd.DataFrame, heads: tuple[str, ...]) -> dict[str, dict[str, float | int | None]]:
    """Per head and split (val, test): n available, mean absolute error and Spearman correlation of
    the prediction against the target (None where undefined: fewer than two rows or a constant side)."""
    out: dict[str, dict[str, float | int | None]] = {}
    for head in heads:
        target_column, available_column = head_columns(head)
        entry: dict[str, float | int | None] = {}
        for split in ("val", "test"):
            part = predictions[(predictions["split"] == split) & predictions[available_column].astype(bool)]
            prediction, target = part[f"prediction_{head}"].astype(float), part[target_column].astype(float)
            entry[f"{split}_n"] = len(part)
            entry[f"{split}_mae"] = float((prediction - target).abs().mean()) if len(part) else None
            entry[f"{split}_spearman"] = rank_correlation(prediction, target)
        out[head] = entry
    return out


def rank_correlation(x: pd.Series, y: pd.Series) -> float | None:
    """Spearman's rho by pandas (average ranks), None where undefined. Not scipy.stats: importing it
    would cost each of the ~200 jobs about half a second."""
    if len(x) < 2 or x.nunique() < 2 or y.nunique() < 2:
        return None
    value = float(x.reset_index(drop=True).corr(y.reset_index(drop=True), method="spearman"))
    return None if math.isnan(value) else value


def auc(predictions: pd.DataFrame) -> float | None:
    """ROC AUC of a predictions table, or None when the part holds one class only (AUC undefined).

    crowdskin.evaluate.stats.auc (ranks, ties counted one half; equal to sklearn's roc_auc_score):
    importing sklearn.metrics would cost each of the ~200 jobs about a second.
    """
    from crowdskin.evaluate.stats import auc as rank_auc

    value = rank_auc(predictions["label"].to_numpy().astype(int), predictions["score"].to_numpy())
    return None if math.isnan(value) else value


def log_job_run(uri: str, experiment: str, name: str, *, params: dict[str, Any], tags: dict[str, str],
                metrics: dict[str, float], history: pd.DataFrame, out: Path,
                checkpoint: Checkpoint | None = None) -> str:
    """One job's MLflow run, with its predictions, history and history plot as artifacts. With the
    job's checkpoint, the run an attempt stopped in is completed, and a new run's id is kept there."""
    from crowdskin.train import tracking

    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(tmp) / "history.png"
        if len(history):
            _history_plot(history, plot)
        artifacts = [out / "predictions.parquet", out / "history.csv"] + ([plot] if plot.exists() else [])
        artifacts += [path for path in [out / "annotators.parquet"] if path.is_file()]
        return tracking.log_run(uri, experiment, run_name=name, params=params, tags=tags,
                                history=history.to_dict("records"), metrics=metrics, artifacts=artifacts,
                                resume=checkpoint.mlflow_run_id if checkpoint else None,
                                opened=checkpoint.keep_mlflow_run if checkpoint else None)


def log_pending_runs(uri: str, jobs: Mapping[Path, Mapping[str, Any]]) -> dict[Path, tuple[str | None, str | None]]:
    """Log the runs that cluster jobs left in their metrics.json (`mlflow_pending`), from the one
    process that owns the store. `jobs` maps each metrics.json to its parsed content; returns (run
    id, error) per job that had a pending run. A run already logged by an earlier call (same record)
    is found again by its record tag instead of being logged twice."""
    from crowdskin.train import tracking

    logged: dict[Path, tuple[str | None, str | None]] = {}
    for path, job in jobs.items():
        pending = job.get("mlflow_pending")
        if not pending or job.get("mlflow_run_id"):
            continue
        try:
            run_id = tracking.find_pending_run(uri, pending)
            if run_id is None:
                out = Path(path).parent
                history = pd.read_csv(out / "history.csv") if (out / "history.csv").stat().st_size else pd.DataFrame()
                run_id = log_job_run(uri, pending["experiment"], pending["run_name"], params=pending["params"],
                                     tags={**pending["tags"], tracking.RECORD_TAG: pending["record"]},
                                     metrics=pending["metrics"], history=history, out=out)
            logged[Path(path)] = (run_id, None)
        except Exception as error:  # noqa: BLE001 - as in a job: a store that is down loses no training
            log.warning("MLflow logging of %s failed: %s", path, error)
            logged[Path(path)] = (None, f"{type(error).__name__}: {error}")
    return logged


def _history_plot(history: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    for column in ("loss", "val_loss"):
        if column in history:
            left.plot(history["epoch"], history[column], marker="o", label=column)
    for column in ("auc", "val_auc"):
        if column in history:
            right.plot(history["epoch"], history[column], marker="o", label=column)
    left.set_xlabel("epoch")
    right.set_xlabel("epoch")
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _log_to_mlflow(spec: JobSpec, metrics: dict[str, Any], history: pd.DataFrame,
                   out: Path, checkpoint: Checkpoint | None = None) -> tuple[str | None, str | None]:
    """Returns (run id, None) or (None, error); never raises: the outputs are already written."""
    from crowdskin.train import tracking

    task = spec.task
    heads = kind_of(task.kind).heads(task)
    # Parameters are the experiment (science settings, data, split); how it ran goes to tags.
    params = {**{k: v for k, v in spec.settings.items() if k != "task"}, "backbone": spec.backbone,
              "task": task.name, "kind": task.kind, "source": task.source, "feature": task.feature,
              "heads": ",".join(heads), "fold": spec.fold, "seed": spec.seed, "split_hash": spec.split_hash,
              "data_version": spec.data_version,
              "class_weight": metrics["class_weight"], "counts": metrics["counts"], "run_name": spec.experiment}
    tags = {"task": task.name, "kind": task.kind, "backbone": spec.backbone, "fold": str(spec.fold),
            "source": str(task.source), "feature": str(task.feature), "multitask": str(bool(heads)).lower(),
            "split_hash": spec.split_hash, "mlflow.note.content": "; ".join(metrics["warnings"]),
            "crowdskin.check": str(spec.check).lower(), tracking.NAMESPACE_TAG: spec.mlflow_namespace,
            # where this machine keeps the weights is not part of the experiment (train.weights is)
            "execution.weights_file": str(spec.weights or ""),
            **{f"execution.{k}": str(v) for k, v in spec.execution_tags.items()}}
    if spec.check:  # the task's kind stays a parameter; as a tag it would let a check pass for a model
        tags |= tracking.CHECK_TAGS
    final = {"test_auc": metrics["test_auc"], "val_auc_final": metrics["val_auc"],
             "train_seconds": metrics["train_seconds"]}
    # Per head: test_<head>_mae, test_<head>_spearman, val_... (the MLflow UI sorts and plots them).
    for head, values in metrics["heads"].items():
        for split in ("val", "test"):
            for statistic in ("mae", "spearman"):
                final[f"{split}_{head}_{statistic}"] = values[f"{split}_{statistic}"]
    for statistic, value in metrics.get("annotators", {}).items():
        final[f"annotators_{statistic}"] = value
    final = {k: float(v) for k, v in final.items() if v is not None}
    name = f"{'check/' if spec.check else ''}{task.name}/{spec.backbone}/fold{spec.fold}"
    if spec.defer_mlflow:
        metrics["mlflow_pending"] = tracking.pending_run(spec.experiment, name, params=params, tags=tags,
                                                         metrics=final)
        return None, None
    try:
        run_id = log_job_run(tracking.tracking_uri(spec.mlflow_uri), spec.experiment, name, params=params,
                             tags=tags, metrics=final, history=history, out=out, checkpoint=checkpoint)
        return run_id, None
    except Exception as error:  # noqa: BLE001 - logging must not lose a finished training
        log.warning("MLflow logging failed, outputs are kept: %s", error)
        return None, f"{type(error).__name__}: {error}"

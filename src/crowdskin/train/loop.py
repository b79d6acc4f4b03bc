"""One training job (task, backbone, fold): train with an every-epoch checkpoint, predict, log.

Resume: after each epoch but the last the model (with optimizer state) and the history so far go to
`<out>/checkpoint/`, which is not a Snakemake output, so `--rerun-incomplete` keeps it. A re-run
whose settings fingerprint matches continues at the next epoch and ends with the same number of
epochs. The finished model is kept there too (a hard link) until metrics.json exists, so a job
killed while writing outputs or logging to MLflow does not train again.

Order of outputs: predictions, history, model, then MLflow, then metrics.json (with the run id, or
the logging error) last.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crowdskin.train.examples import ExampleNotes, balanced_class_weights
from crowdskin.train.tasks import Task

log = logging.getLogger(__name__)
# Below this much training a job that keeps no model.keras writes no final checkpoint either.
FINAL_CHECKPOINT_MIN_TRAIN_SECONDS = 10.0
HISTORY_COLUMNS = ["epoch", "loss", "label_loss", "target_loss", "auc",
                   "val_loss", "val_label_loss", "val_target_loss", "val_auc"]


@dataclass
class JobSpec:
    task: Task
    backbone: str
    fold: int
    settings: dict[str, Any]  # the validated train section
    input_size: int
    seed: int
    split_hash: str
    out_dir: Path
    weights: Path | None = None
    base_model: Path | None = None  # crowdsim-incremental: the fold's trained baseline
    threads: int = 1
    save_model: bool = True
    data_version: str = ""
    mlflow_uri: str | None = None
    experiment: str = "default"
    extra_params: dict[str, Any] = field(default_factory=dict)


def _fingerprint(spec: JobSpec, examples: pd.DataFrame) -> str:
    """What must be equal for a checkpoint to be resumed (settings, data, split)."""
    payload = json.dumps({
        "task": spec.task.name, "backbone": spec.backbone, "fold": spec.fold, "settings": spec.settings,
        "size": spec.input_size, "seed": spec.seed, "split": spec.split_hash, "data": spec.data_version,
        "examples": hashlib.sha256(pd.util.hash_pandas_object(examples, index=False).values.tobytes()).hexdigest(),
    }, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def _history_row(epoch: int, logs: dict[str, float]) -> dict[str, float]:
    # Keras names a single-output dict model's metrics without the output prefix; one shape here.
    row: dict[str, float] = {"epoch": float(epoch)}
    for key, value in logs.items():
        name = key.replace("label_auc", "auc")
        row[name] = float(value)
    return row


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


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link costs nothing and survives the checkpoint's removal; some filesystems refuse it.
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def train_job(
    spec: JobSpec,
    examples: pd.DataFrame,
    notes: ExampleNotes,
    cache_array: np.ndarray,
    cache_index: pd.DataFrame,
) -> dict[str, Any]:
    """Train, predict, write the four outputs and log to MLflow. Returns the metrics.json payload."""
    started = time.time()
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = out / "checkpoint"
    settings = spec.settings

    # Images that the cache could not read are reported, not silently dropped.
    rows = examples.merge(cache_index[["image_id", "row", "reason"]], on="image_id", how="left")
    unreadable = rows["row"].isna() | (rows["row"] < 0)
    if unreadable.any():
        notes.warnings.append(f"{int(unreadable.sum())} examples have no cached image and were left out: "
                              + "; ".join(rows.loc[unreadable, "reason"].fillna("not in cache").astype(str).head(3)))
        notes.counts["uncached"] = int(unreadable.sum())
    examples = rows[~unreadable].reset_index(drop=True)
    examples["row"] = examples["row"].astype(np.int64)
    for warning in notes.warnings:
        log.warning("%s/%s/fold%d: %s", spec.task.name, spec.backbone, spec.fold, warning)

    from crowdskin.train.runtime import configure

    runtime = configure(threads=spec.threads, mixed_precision=settings["mixed_precision"], xla=settings["xla"],
                        deterministic=settings["deterministic"], seed=spec.seed + spec.fold)
    import keras

    log.info("TensorFlow ready after %.1f s", time.time() - started)
    from crowdskin.train import models
    from crowdskin.train.pipeline import make_dataset

    train = examples[examples["split"] == "train"]
    val = examples[examples["split"] == "val"]
    class_weight = (balanced_class_weights(train["label"].to_numpy()) if settings["class_weight"] == "balanced"
                    and len(train) else {0: 1.0, 1: 1.0})
    multitask = spec.task.multitask
    batch = settings["batch_size"] * max(1, runtime.n_gpus)
    augment_settings = settings["augment"]
    augment = (models.augmentation(augment_settings, seed=spec.seed) if augment_settings["enabled"] else None)
    in_pipeline = augment if augment_settings["placement"] == "pipeline" else None
    in_model = augment if augment_settings["placement"] == "model" else None

    def dataset(part: pd.DataFrame, training: bool) -> Any:
        return make_dataset(cache_array, part["row"].to_numpy(), part["label"].to_numpy(),
                            part["target"].to_numpy() if multitask else None,
                            part["available"].to_numpy() if multitask else None,
                            batch_size=batch, training=training, seed=spec.seed + spec.fold,
                            augment=in_pipeline if training else None, deterministic=settings["deterministic"])

    fingerprint = _fingerprint(spec, examples)
    state_path = checkpoint_dir / "state.json"
    state: dict[str, Any] = {"fingerprint": fingerprint, "epochs_done": 0, "history": [], "finished": False}
    if state_path.is_file():
        previous = json.loads(state_path.read_text())
        if previous.get("fingerprint") == fingerprint:
            state = previous
            log.info("resuming from checkpoint: %d epoch(s) done, finished=%s", state["epochs_done"], state["finished"])
        else:
            log.warning("checkpoint in %s is from other settings or data; starting afresh", checkpoint_dir)
            shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(exist_ok=True)

    epochs = settings["epochs"]
    learning_rate = settings["learning_rate"]
    if spec.task.kind == "crowdsim-incremental" and settings["crowdsim"]["incremental_learning_rate"]:
        learning_rate = settings["crowdsim"]["incremental_learning_rate"]
    with runtime.strategy.scope():
        if state["finished"]:
            model = keras.models.load_model(checkpoint_dir / "final.keras", compile=False)
        elif state["epochs_done"] > 0:
            model = keras.models.load_model(checkpoint_dir / "model.keras")
        else:
            if spec.task.kind == "crowdsim-incremental":
                if spec.base_model is None:
                    raise ValueError("crowdsim-incremental needs the fold's baseline model")
                model = keras.models.load_model(spec.base_model, compile=False)
            else:
                model = models.build_model(spec.backbone, spec.input_size, multitask=multitask, weights=spec.weights,
                                           preprocess=settings["preprocess"], augment=in_model)
            models.compile_model(model, optimizer=models.make_optimizer(settings["optimizer"], learning_rate),
                                 class_weight=class_weight, loss_weights=settings["loss_weights"],
                                 jit_compile=runtime.jit_compile, run_eagerly=settings["run_eagerly"])

    class EpochCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            state["history"].append(_history_row(epoch + 1, logs or {}))
            state["epochs_done"] = epoch + 1
            if settings["checkpoint"] and epoch + 1 < epochs:
                tmp = checkpoint_dir / "model.tmp.keras"
                self.model.save(tmp)
                os.replace(tmp, checkpoint_dir / "model.keras")
                _write_json(state_path, state)

    train_seconds = 0.0
    if not state["finished"]:
        fit_started = time.time()
        if len(train) and state["epochs_done"] < epochs:
            validation_steps = min(settings["validation_steps"], math.ceil(len(val) / batch))
            model.fit(dataset(train, True), epochs=epochs, initial_epoch=state["epochs_done"],
                      steps_per_epoch=settings["steps_per_epoch"], validation_data=dataset(val, False),
                      validation_steps=validation_steps, callbacks=[EpochCheckpoint()], shuffle=False, verbose=2)
        train_seconds = time.time() - fit_started
        # The finished model goes to the checkpoint so that a kill while predicting or logging does
        # not train again; when no model.keras is kept and the training was quicker than a save
        # (the default grid's one-step jobs: 0.3-0.6 s per save, 180 jobs), a kill re-trains instead.
        if spec.save_model or train_seconds >= FINAL_CHECKPOINT_MIN_TRAIN_SECONDS:
            save_started = time.time()
            final = checkpoint_dir / "final.keras"
            _save_without_optimizer(model, final)
            if spec.save_model:
                _link_or_copy(final, out / "model.keras")
            state["finished"] = True
            _write_json(state_path, state)
            (checkpoint_dir / "model.keras").unlink(missing_ok=True)
            log.info("fit %.1f s, save %.1f s", train_seconds, time.time() - save_started)
        else:
            log.info("fit %.1f s (no model kept)", train_seconds)
    elif spec.save_model:
        _link_or_copy(checkpoint_dir / "final.keras", out / "model.keras")

    predict_started = time.time()
    predictions = predict(model, examples, cache_array, batch=batch, fold=spec.fold, multitask=multitask)
    predictions.to_parquet(out / "predictions.parquet", index=False)
    log.info("predict %.1f s", time.time() - predict_started)
    history = pd.DataFrame(state["history"])
    for column in HISTORY_COLUMNS:
        if column not in history.columns:
            history[column] = np.nan
    history = history[HISTORY_COLUMNS + [c for c in history.columns if c not in HISTORY_COLUMNS]]
    history["epoch"] = history["epoch"].astype(int)
    history.to_csv(out / "history.csv", index=False)

    metrics: dict[str, Any] = {
        "task": spec.task.name, "backbone": spec.backbone, "fold": spec.fold,
        "test_auc": auc(predictions[predictions["split"] == "test"]),
        "val_auc": auc(predictions[predictions["split"] == "val"]),
        "epochs": int(state["epochs_done"]), "split_hash": spec.split_hash,
        "class_weight": class_weight, "counts": notes.counts, "warnings": notes.warnings,
        "train_seconds": round(train_seconds, 3), "job_seconds": None,
        "mlflow_run_id": None, "mlflow_error": None,
    }
    logging_started = time.time()
    metrics["mlflow_run_id"], metrics["mlflow_error"] = _log_to_mlflow(spec, metrics, history, out)
    metrics["mlflow_seconds"] = round(time.time() - logging_started, 3)
    metrics["job_seconds"] = round(time.time() - started, 3)
    _write_json(out / "metrics.json", metrics)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return metrics


def predict(model: Any, examples: pd.DataFrame, cache_array: np.ndarray, *, batch: int, fold: int,
            multitask: bool) -> pd.DataFrame:
    """predictions.parquet: image_id, fold, split, score, label (+ label_source, target prediction)."""
    from crowdskin.train.pipeline import make_dataset

    data = make_dataset(cache_array, examples["row"].to_numpy(), examples["label"].to_numpy(),
                        batch_size=max(batch, 32), training=False)
    outputs = model.predict(data.map(lambda x, y: x), verbose=0)
    frame = pd.DataFrame({
        "image_id": examples["image_id"].to_numpy(), "fold": fold, "split": examples["split"].to_numpy(),
        "score": np.asarray(outputs["label"], np.float64).reshape(-1),
        "label": examples["label"].astype(int).to_numpy(), "label_source": examples["label_source"].to_numpy(),
    })
    if multitask and "target" in outputs:
        frame["target_prediction"] = np.asarray(outputs["target"], np.float64).reshape(-1)
        frame["target"] = examples["target"].to_numpy()
        frame["target_available"] = examples["available"].to_numpy()
    return frame


def auc(predictions: pd.DataFrame) -> float | None:
    """ROC AUC, or None when the part holds one class only (AUC undefined).

    The Mann-Whitney form with average ranks for ties equals sklearn's roc_auc_score (tested); it is
    written out because importing sklearn.metrics costs each of the ~200 jobs about a second.
    """
    labels = predictions["label"].to_numpy().astype(int)
    n_positive = int(labels.sum())
    n_negative = len(labels) - n_positive
    if n_positive == 0 or n_negative == 0:
        return None
    ranks = predictions["score"].rank(method="average").to_numpy()
    return float((ranks[labels == 1].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def _history_plot(history: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    for column in ("loss", "val_loss"):
        left.plot(history["epoch"], history[column], marker="o", label=column)
    for column in ("auc", "val_auc"):
        right.plot(history["epoch"], history[column], marker="o", label=column)
    left.set_xlabel("epoch"), right.set_xlabel("epoch"), left.legend(), right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _log_to_mlflow(spec: JobSpec, metrics: dict[str, Any], history: pd.DataFrame, out: Path) -> tuple[str | None, str | None]:
    """Returns (run id, None) or (None, error); never raises: the outputs are already written."""
    from crowdskin.train import tracking

    task = spec.task
    params = {**spec.settings, "backbone": spec.backbone, "task": task.name, "kind": task.kind,
              "source": task.source, "feature": task.feature, "fold": spec.fold, "seed": spec.seed,
              "split_hash": spec.split_hash, "data_version": spec.data_version, "input_size_used": spec.input_size,
              "weights_file": spec.weights, "class_weight": metrics["class_weight"],
              "counts": metrics["counts"], **spec.extra_params}
    tags = {"task": task.name, "kind": task.kind, "backbone": spec.backbone, "fold": str(spec.fold),
            "source": str(task.source), "feature": str(task.feature), "multitask": str(task.multitask).lower(),
            "split_hash": spec.split_hash, "mlflow.note.content": "; ".join(metrics["warnings"])}
    final = {"test_auc": metrics["test_auc"], "val_auc_final": metrics["val_auc"],
             "train_seconds": metrics["train_seconds"]}
    final = {k: float(v) for k, v in final.items() if v is not None}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plot = Path(tmp) / "history.png"
            if len(history):
                _history_plot(history, plot)
            artifacts = [out / "predictions.parquet", out / "history.csv"] + ([plot] if plot.exists() else [])
            uri = tracking.tracking_uri(spec.mlflow_uri)
            run_id = tracking.log_run(uri, spec.experiment, run_name=f"{task.name}/{spec.backbone}/fold{spec.fold}",
                                      params=params, tags=tags, history=history.to_dict("records"),
                                      metrics=final, artifacts=artifacts)
        return run_id, None
    except Exception as error:  # noqa: BLE001 - logging must not lose a finished training
        log.warning("MLflow logging failed, outputs are kept: %s", error)
        return None, f"{type(error).__name__}: {error}"

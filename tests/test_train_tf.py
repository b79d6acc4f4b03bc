"""Training stage with TensorFlow: the masked loss, resume after a kill, the warm worker, and a tiny
end-to-end run on real thumbnails. Kept few and tiny (the small CNN at 32 px, one-step epochs; the
workflow tests train VGG16 once, as the test config's backbone check)."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdskin.config import section
from crowdskin.train.cache import write_cache
from crowdskin.train.settings import job_settings
from crowdskin.train.splits import make_folds
from crowdskin.train.tasks import task_grid

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # Keras 3.15 on numpy 2.4: np.array(copy=False)
]
TINY = {"input_size": 32, "batch_size": 4, "epochs": 1, "steps_per_epoch": 1, "validation_steps": 1,
        "run_eagerly": True, "backbones": ["smallcnn"]}


def _request(tmp_path: Path, *, task: str = "baseline", n: int = 24, images: pd.DataFrame | None = None,
             cache: tuple[np.ndarray, pd.DataFrame] | None = None, targets: pd.DataFrame | None = None,
             **train: object) -> dict:
    """A job request on hand-made inputs (random pixels unless `cache` is given)."""
    if images is None:
        images = pd.DataFrame({"image_id": [f"T{i:03d}" for i in range(n)], "dataset": "test", "image_path": "x.png",
                               "abnormal": pd.array([i % 3 == 0 for i in range(n)], dtype="Int8"), "group_id": pd.NA})
    if cache is None:
        rng = np.random.default_rng(0)
        cache = (rng.integers(0, 255, (len(images), 32, 32, 3), dtype=np.uint8),
                 pd.DataFrame({"image_id": images["image_id"], "row": np.arange(len(images)),
                               "reason": pd.array([None] * len(images), dtype="string")}))
    lesions = images.assign(abnormal=images["abnormal"].astype(int))
    inputs = {"images": tmp_path / "images.parquet", "folds": tmp_path / "folds.parquet",
              "cache_array": tmp_path / "cache.npy", "cache_index": tmp_path / "cache.parquet",
              "experiment": tmp_path / "experiment.json"}
    images.to_parquet(inputs["images"])
    make_folds(lesions, scheme="kfold", n_folds=5, seed=0).to_parquet(inputs["folds"])
    write_cache(cache[0], cache[1], inputs["cache_array"], inputs["cache_index"])
    inputs["experiment"].write_text(json.dumps({"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                                "experiment": "test"}))
    if targets is not None:
        inputs["targets"] = tmp_path / "targets.parquet"
        targets.to_parquet(inputs["targets"])
    settings = section("train", {**TINY, **train})
    tasks = {t.name: t for t in task_grid(settings)}
    return {"task": task, "backbone": "smallcnn", "fold": 0, "seed": 0, "threads": 1, "save_model": True,
            "settings": job_settings(settings, tasks[task], "smallcnn"), "out_dir": str(tmp_path / "job"),
            "log": str(tmp_path / "job.log"), "inputs": {k: str(v) for k, v in inputs.items()}}


def _epochs_backed_up(job: Path) -> int:
    """Epochs in the job's BackupAndRestore checkpoint (0 when there is none)."""
    metadata = job / "checkpoint" / "backup" / "training_metadata.json"
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _wait_for_epoch(job: Path, epoch: int, process: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = _epochs_backed_up(job)
        if done >= epoch:
            return done
        assert process.poll() is None, f"job ended before epoch {epoch}"
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout} s")


def test_masked_loss_matches_a_hand_computation():
    import keras

    from crowdskin.train.models import MaskedMSE, WeightedBinaryCrossentropy, compile_model, label_pairs

    pair = np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]], np.float32)  # [target, available]
    prediction = np.array([[0.5], [10.0], [0.0]], np.float32)
    # A real 0 annotation counts; the unavailable row's error (64) does not.
    assert float(MaskedMSE()(pair, prediction)) == pytest.approx((0.25 + 1.0) / 2)
    assert float(MaskedMSE()(np.array([[0.0, 0.0], [3.0, 0.0]], np.float32), np.ones((2, 1), np.float32))) == 0.0

    labels, scores = np.array([[1.0], [0.0], [1.0]], np.float32), np.array([[0.8], [0.3], [0.6]], np.float32)
    weights = {0: 0.75, 1: 1.5}
    bce = -np.array([np.log(0.8), np.log(0.7), np.log(0.6)]) * np.array([1.5, 0.75, 1.5])
    labels = label_pairs(labels, weights)
    assert float(WeightedBinaryCrossentropy()(labels, scores)) == pytest.approx(bce.mean(), rel=1e-5)

    inputs = keras.Input((2,))
    model = keras.Model(inputs, {"label": keras.layers.Dense(1, activation="sigmoid", name="label")(inputs),
                                 "target": keras.layers.Dense(1, name="target")(inputs)})
    compile_model(model, optimizer=keras.optimizers.RMSprop(),
                  loss_weights={"label": 0.5, "target": 0.5})
    total = model.compute_loss(y={"label": labels, "target": pair}, y_pred={"label": scores, "target": prediction})
    assert float(total) == pytest.approx(0.5 * (0.25 + 1.0) / 2 + 0.5 * bce.mean(), rel=1e-5)


def test_class_weights_as_data_train_to_the_bit_as_constants_in_the_loss():
    """The class weights travel with each row's label (so that every fold runs one compiled
    program) instead of being constants of the loss. Training on them must give the same weights,
    to the bit, as the loss with the constants did: binary, soft and unlearned (NaN) labels, over
    several steps of a compiled model. Catches a weight computed in another order or precision, a
    NaN label that counts, or a weight applied twice (also through Keras' sample weights)."""
    import keras
    from keras import ops

    from crowdskin.train.models import MaskedMSE, compile_model, label_pairs

    class ConstantWeights(keras.losses.Loss):  # the loss as it was, weights compiled in
        def __init__(self, negative: float, positive: float) -> None:
            super().__init__(name="weighted_bce")
            self.negative, self.positive = negative, positive

        def call(self, y_true, y_pred):
            y_true = ops.cast(ops.reshape(y_true, (-1, 1)), "float32")
            y_pred = ops.cast(ops.reshape(y_pred, (-1, 1)), "float32")
            learned = ops.logical_not(ops.isnan(y_true))
            y_true = ops.where(learned, y_true, ops.zeros_like(y_true))
            bce = keras.losses.binary_crossentropy(y_true, y_pred)
            weight = y_true[:, 0] * self.positive + (1.0 - y_true[:, 0]) * self.negative
            return weight * ops.cast(learned[:, 0], "float32") * bce

    weights = {0: 0.6153846153846154, 1: 2.6666666666666665}  # balanced weights of 13 lesions, 3 abnormal
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 5)).astype(np.float32)
    labels = np.array([1, 0, 0, 0.3, np.nan, 0.8, 0, 1] * 3, np.float32)
    pair = np.stack([rng.normal(size=24), (np.arange(24) % 2).astype(float)], axis=1).astype(np.float32)

    def trained(label_loss, label_data):
        keras.utils.set_random_seed(7)
        inputs = keras.Input((5,))
        hidden = keras.layers.Dense(4, activation="relu")(inputs)
        model = keras.Model(inputs, {"label": keras.layers.Dense(1, activation="sigmoid", name="label")(hidden),
                                     "target": keras.layers.Dense(1, name="target")(hidden)})
        if label_loss is None:
            compile_model(model, optimizer=keras.optimizers.RMSprop(0.05), loss_weights={"label": 0.5, "target": 0.5})
        else:
            model.compile(optimizer=keras.optimizers.RMSprop(0.05), loss={"label": label_loss, "target": MaskedMSE()},
                          loss_weights={"label": 0.5, "target": 0.5})
        history = model.fit(x, {"label": label_data, "target": pair}, batch_size=8, epochs=3, shuffle=False,
                            verbose=0)
        return history.history["loss"], model.get_weights()

    old_losses, old_weights = trained(ConstantWeights(weights[0], weights[1]), labels.reshape(-1, 1))
    new_losses, new_weights = trained(None, label_pairs(labels, weights))
    assert new_losses == old_losses
    for old, new in zip(old_weights, new_weights, strict=True):
        np.testing.assert_array_equal(new, old)


def test_predictions_run_whole_batches_and_keep_every_row_in_order():
    """Prediction pads its last batch with repeated rows (one compiled shape for every fold) and
    drops their outputs. Catches a padded row kept, rows out of order, or a partial batch left."""
    import keras

    from crowdskin.train.loop import predict
    from crowdskin.train.models import build_model

    keras.utils.set_random_seed(0)
    cache = np.random.default_rng(0).integers(0, 255, (50, 16, 16, 3), dtype=np.uint8)
    rows = np.random.default_rng(1).permutation(50)[:37]
    examples = pd.DataFrame({"image_id": [f"L{row:02d}" for row in rows], "split": "test", "row": rows,
                             "label": (rows % 2).astype(float), "label_source": "diagnosis"})
    model = build_model("smallcnn", 16)
    shapes: list[int] = []
    real_predict = model.predict

    def recording(data, **kwargs):
        shapes.extend(len(data[index][0]) for index in range(len(data)))
        return real_predict(data, **kwargs)

    model.predict = recording
    frame = predict(model, examples, cache, batch=8, fold=2)
    assert shapes == [32, 32]
    assert frame["image_id"].tolist() == examples["image_id"].tolist() and (frame["fold"] == 2).all()
    expected = real_predict(cache[rows].astype(np.float32), verbose=0)["label"].reshape(-1)
    np.testing.assert_allclose(frame["score"].to_numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_model_with_the_papers_augmentation_inside_loads_again(tmp_path):
    """The paper config puts its augmentation inside the model. Keras 3.15's RandomShear saves its
    factor as (-f, f) and refuses that range when it reads it back, so fine-tuning (crowdsim
    incremental), explanation and a resumed job could not load such a model. Catches the shear's
    config not loading, a loaded model that predicts otherwise, and the shear left out of JAX's
    compiled step."""
    import keras

    from crowdskin.config import section
    from crowdskin.train import models

    settings = section("train", {"augment": {"enabled": True, "placement": "model"}})["augment"]
    assert settings["shear_degrees"] > 0
    model = models.build_model("smallcnn", 16, heads=("asymmetry",), augment=models.augmentation(settings, seed=3))
    model.save(tmp_path / "model.keras")
    loaded = models.load_saved_model(tmp_path / "model.keras")
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    for name, values in model.predict(pixels, verbose=0).items():
        np.testing.assert_array_equal(loaded.predict(pixels, verbose=0)[name], values)
    shear = loaded.get_layer("augmentation").get_layer("random_shear")
    assert isinstance(shear, models.SymmetricShear)
    assert shear.x_factor[1] == shear.y_factor[1] == pytest.approx(np.tan(np.radians(settings["shear_degrees"])))
    models._allow_jit_of_augmentation(loaded)
    assert all(layer.supports_jit for layer in loaded.get_layer("augmentation").layers)

    # Keras' own layer, as models were built before: its saved config does not load.
    keras_own = keras.layers.RandomShear(x_factor=shear.x_factor[1], fill_mode="nearest")
    with pytest.raises((TypeError, ValueError), match="factor"):
        keras.layers.RandomShear.from_config(keras_own.get_config())


def test_several_heads_share_the_annotation_weight_each_masked_on_its_own():
    """Two heads: 0.5 x BCE + 0.25 x each head's masked MSE, every head masked by its own flags (a
    real 0 counts). Fails if each head took the whole `target` weight, or one head's mask another's."""
    import keras

    from crowdskin.train.models import build_model, compile_model, label_pairs

    model = build_model("smallcnn", 16, heads=("asymmetry", "asymmetry_std"))
    assert sorted(model.output) == ["label", "target_asymmetry", "target_asymmetry_std"]
    compile_model(model, optimizer=keras.optimizers.RMSprop(), loss_weights={"label": 0.5, "target": 0.5})
    labels, scores = label_pairs([1.0, 0.0]), np.array([[0.8], [0.4]], np.float32)
    first = np.array([[0.0, 1.0], [5.0, 0.0]], np.float32)  # row 1 unavailable
    second = np.array([[1.0, 0.0], [2.0, 1.0]], np.float32)  # row 0 unavailable
    predicted_first, predicted_second = np.array([[1.0], [0.0]], np.float32), np.array([[0.0], [0.0]], np.float32)
    total = model.compute_loss(
        y={"label": labels, "target_asymmetry": first, "target_asymmetry_std": second},
        y_pred={"label": scores, "target_asymmetry": predicted_first, "target_asymmetry_std": predicted_second})
    bce = -np.mean([np.log(0.8), np.log(0.6)])
    assert float(total) == pytest.approx(0.5 * bce + 0.25 * 1.0 + 0.25 * 4.0, rel=1e-5)


def test_killed_job_resumes_from_its_last_epoch(tmp_path, caplog):
    from crowdskin.train.job import run_request

    request = _request(tmp_path, epochs=5)
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    process = subprocess.Popen([sys.executable, "-m", "crowdskin.train.job", str(path)])
    try:
        killed_after = _wait_for_epoch(tmp_path / "job", 2, process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert 2 <= killed_after < 5
    assert not (tmp_path / "job" / "metrics.json").exists()

    with caplog.at_level(logging.INFO, logger="crowdskin.train"):
        metrics = run_request(request)
    history = pd.read_csv(tmp_path / "job" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, 6))
    assert metrics["epochs"] == 5
    resumed = re.search(r"resuming from checkpoint: (\d+) epoch\(s\) done", caplog.text)
    assert resumed and killed_after <= int(resumed.group(1)) < 5
    assert not (tmp_path / "job" / "checkpoint").exists()


def _until(condition, what: str, timeout: float = 30):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)
    return value


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie keeps /proc/PID until its parent reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_warm_worker_stops_the_job_of_a_killed_client_and_resumes(tmp_path):
    """Kills the client while its forked child trains, then requires that the child is killed and
    reaped before it finishes (no metrics, predictions or model), and that the same server resumes
    the job. Fails if the worker does not kill the child of a disconnected client (the child runs
    to the end and writes its outputs)."""
    from crowdskin.train.worker import socket_path, submit

    epochs = 6  # the job is still training when its client is killed, the resume stays short
    request = _request(tmp_path, epochs=epochs)
    job, worker_log = tmp_path / "job", tmp_path / "worker.log"
    sock = socket_path(tmp_path)
    client_code = ("import json, sys; from pathlib import Path; from crowdskin.train.worker import submit; "
                   f"sys.exit(submit(json.loads(Path({str(tmp_path / 'request.json')!r}).read_text()), "
                   f"path=Path({str(sock)!r}), server_log={str(worker_log)!r}, idle_timeout=5))")
    (tmp_path / "request.json").write_text(json.dumps(request))

    def log_pids(pattern: str) -> list[int]:
        text = worker_log.read_text() if worker_log.exists() else ""
        return [int(pid) for pid in re.findall(pattern, text)]

    client = subprocess.Popen([sys.executable, "-c", client_code])
    try:
        [child] = _until(lambda: log_pids(r"child (\d+): baseline"), "child in the worker log", timeout=180)
        killed_after = _wait_for_epoch(job, 1, client, timeout=180)
        assert _running(child) and killed_after < epochs and not (job / "metrics.json").exists()
        client.send_signal(signal.SIGKILL)
    finally:
        client.wait()
    assert client.returncode == -signal.SIGKILL
    [server] = log_pids(r"serving on .* \(pid (\d+)\)")

    # The orphaned child is killed and reaped by the server (no /proc entry, not even a zombie) ...
    _until(lambda: not Path(f"/proc/{child}").exists(), f"end of child {child}")
    assert _running(server)
    # ... before it finished: the checkpoint is there, no output of a complete job is.
    assert 1 <= _epochs_backed_up(job) < epochs
    assert not [name for name in ("metrics.json", "predictions.parquet", "history.csv", "model.keras")
                if (job / name).exists()]

    # The same server serves the next job, which resumes from the checkpoint.
    assert submit(request, path=sock, server_log=worker_log, idle_timeout=2) == 0
    assert log_pids(r"serving on .* \(pid (\d+)\)") == [server]
    assert len(log_pids(r"child (\d+): baseline")) == 2
    assert pd.read_csv(job / "history.csv")["epoch"].tolist() == list(range(1, epochs + 1))
    assert "resuming from checkpoint" in Path(request["log"]).read_text()


class _KilledWhileLogging(BaseException):
    """Stands for a SIGKILL that arrives while the job talks to MLflow."""


def test_logging_never_loses_a_finished_training(tmp_path, monkeypatch, caplog):
    from crowdskin.train import tracking
    from crowdskin.train.job import run_request

    request = _request(tmp_path)
    out = tmp_path / "job"

    def killed(*args, **kwargs):
        raise _KilledWhileLogging

    monkeypatch.setattr(tracking, "log_run", killed)
    with pytest.raises(_KilledWhileLogging):
        run_request(request)
    assert (out / "checkpoint" / "final.keras").is_file()
    assert not (out / "metrics.json").exists()

    def store_down(*args, **kwargs):
        raise RuntimeError("store down")

    monkeypatch.setattr(tracking, "log_run", store_down)
    with caplog.at_level(logging.INFO, logger="crowdskin.train"):
        metrics = run_request(request)
    assert "training finished before" in caplog.text  # the re-run did not train again
    assert metrics["train_seconds"] == 0 and metrics["epochs"] == 1
    assert metrics["mlflow_run_id"] is None and metrics["mlflow_error"] == "RuntimeError: store down"
    assert json.loads((out / "metrics.json").read_text())["mlflow_error"] == "RuntimeError: store down"
    assert (out / "predictions.parquet").is_file() and (out / "model.keras").is_file()
    assert not (out / "checkpoint").exists()


def test_a_tracking_server_that_is_down_costs_a_job_seconds_not_its_outputs(tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI at a closed local port: the job ends within a bounded time with its outputs
    and the logging error in metrics.json. Catches: MLflow's own HTTP retries left at their defaults
    (7 retries, backoff factor 2, 120 s timeout: over 5 minutes per call here)."""
    import socket

    from crowdskin.train.job import run_request
    from crowdskin.train.tracking import HTTP_BOUNDS

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    for name in HTTP_BOUNDS:
        monkeypatch.delenv(name, raising=False)  # restored after the test, whatever the job sets
    started = time.monotonic()
    metrics = run_request(_request(tmp_path))
    assert time.monotonic() - started < 90
    assert metrics["mlflow_run_id"] is None and "127.0.0.1" in metrics["mlflow_error"]
    out = tmp_path / "job"
    assert json.loads((out / "metrics.json").read_text())["mlflow_error"] == metrics["mlflow_error"]
    assert (out / "predictions.parquet").is_file() and (out / "model.keras").is_file()


@pytest.mark.real
def test_end_to_end_on_real_thumbnails(shared_data, tmp_path):
    """The 200 ISIC 2017 anchors (126 with crowd scores): multi-task VGG16, one fold, tracked in MLflow."""
    from mlflow.tracking import MlflowClient

    from crowdskin.train.cache import build_image_cache
    from crowdskin.train.job import run_request

    anchors = pd.read_csv(shared_data / "crowdsim" / "ISIC-2017_anchor_images.csv")["image_id"]
    truth = pd.read_csv(shared_data / "isic2017" / "ISIC-2017_Training_Part3_GroundTruth.csv").set_index("image_id")
    images = pd.DataFrame({"image_id": anchors, "dataset": "isic2017",
                           "image_path": [str(shared_data / "crowdsim" / "thumbnails" / f"{i}.jpg") for i in anchors],
                           "abnormal": pd.array(((truth.loc[anchors, "melanoma"]
                                                  + truth.loc[anchors, "seborrheic_keratosis"]) > 0)
                                                .astype(int).to_numpy(), dtype="Int8"), "group_id": pd.NA})
    crowd = pd.read_csv(shared_data / "enhance" / "crowd" / "asymmetry.csv").set_index("ID")
    scores = crowd[["i", "ii", "iii"]].mean(axis=1)
    targets = pd.DataFrame({"image_id": anchors, "source": "crowd", "feature": "asymmetry",
                            "target": scores.reindex(anchors).to_numpy(),
                            "available": anchors.isin(scores.index).to_numpy()})
    assert targets["available"].sum() == 126
    cache = build_image_cache(images, 32)
    assert (cache[1]["row"] >= 0).all()

    request = _request(tmp_path, task="multitask-crowd-asymmetry", images=images, cache=cache, targets=targets,
                       steps_per_epoch=2, batch_size=8)
    metrics = run_request(request)
    out = tmp_path / "job"
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert predictions["split"].value_counts()["test"] == 40
    assert predictions["score"].between(0, 1).all() and predictions["image_id"].is_unique
    assert 0 < metrics["counts"]["train_with_annotation"] < metrics["counts"]["n_train"]
    assert metrics["test_auc"] is not None and (out / "model.keras").stat().st_size > 1_000_000
    assert len(pd.read_csv(out / "history.csv")) == 1

    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(metrics["mlflow_run_id"])
    assert run.data.params["task"] == "multitask-crowd-asymmetry"
    assert run.data.params["split_hash"] == metrics["split_hash"]
    assert run.data.tags["kind"] == "multitask" and run.data.metrics["test_auc"] == pytest.approx(metrics["test_auc"])
    artifacts = {a.path for a in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").list_artifacts(run.info.run_id)}
    assert {"predictions.parquet", "history.csv", "history.png"} <= artifacts


@pytest.mark.parametrize("save_model", [False, True])
def test_a_kill_after_training_retrains_only_a_job_that_keeps_no_model(tmp_path, monkeypatch, caplog, save_model):
    """A job that keeps model.keras keeps its finished model in the checkpoint until metrics.json
    exists; one that keeps none trains again after a kill while logging, however fast it trained."""
    from crowdskin.train import tracking
    from crowdskin.train.job import run_request

    request = {**_request(tmp_path, epochs=2), "save_model": save_model}

    def killed(*args, **kwargs):
        raise _KilledWhileLogging

    monkeypatch.setattr(tracking, "log_run", killed)
    with pytest.raises(_KilledWhileLogging):
        run_request(request)
    checkpoint = tmp_path / "job" / "checkpoint"
    assert (checkpoint / "final.keras").is_file() == save_model
    assert not (checkpoint / "backup").exists()  # Keras removes its backup once fit returns

    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="crowdskin.train"):
        metrics = run_request(request)
    assert ("training finished before" in caplog.text) == save_model
    assert (metrics["train_seconds"] == 0) == save_model
    assert metrics["epochs"] == 2 and (tmp_path / "job" / "model.keras").exists() == save_model
    assert pd.read_csv(tmp_path / "job" / "history.csv")["epoch"].tolist() == [1, 2]


def test_deterministic_mode_reproduces_a_job_exactly(tmp_path):
    """Two runs of one job (augmentation on, two epochs) in deterministic mode: identical outputs."""
    from crowdskin.train.job import run_request

    outputs = []
    for attempt in ("first", "second"):
        (tmp_path / attempt).mkdir()
        request = _request(tmp_path / attempt, epochs=2, steps_per_epoch=2, deterministic=True)
        metrics = run_request(request)
        predictions = pd.read_parquet(tmp_path / attempt / "job" / "predictions.parquet")
        history = pd.read_csv(tmp_path / attempt / "job" / "history.csv")
        outputs.append((metrics["test_auc"], predictions["score"].to_numpy(), history["loss"].to_numpy()))
    (auc_1, scores_1, loss_1), (auc_2, scores_2, loss_2) = outputs
    assert auc_1 == auc_2
    np.testing.assert_array_equal(scores_1, scores_2)
    np.testing.assert_array_equal(loss_1, loss_2)
    assert scores_1.std() > 0  # a model that learned nothing would be reproducible trivially


def test_small_cnn_is_a_base_like_the_study_backbones_and_refuses_weights(tmp_path):
    from crowdskin.train.models import build_model, small_cnn
    from crowdskin.train.weights import WeightsError, resolve_weights

    model = build_model("smallcnn", 32, heads=("border",))
    outputs = model.predict(np.zeros((3, 32, 32, 3), np.float32), verbose=0)
    assert outputs["label"].shape == (3, 1) and outputs["target_border"].shape == (3, 1)
    assert model.get_layer("smallcnn").output.shape[1:] == (4, 4, 64)  # three 2x2 poolings of 32 px
    with pytest.raises(ValueError, match="no pretrained weights"):
        small_cnn(weights=str(tmp_path / "weights.h5"))
    with pytest.raises(WeightsError, match="no ImageNet weights known for backbone 'smallcnn'"):
        resolve_weights("imagenet", "smallcnn")


@pytest.mark.parametrize("name", ["smallcnn", "densenet121", "efficientnetv2b0"])
def test_a_backbone_builds_at_its_minimum_input_and_predicts(name):
    """The other three train at their minimum in the workflow tests' and the default run's checks."""
    from crowdskin.train.backbones import BACKBONES
    from crowdskin.train.models import build_model

    size = BACKBONES[name].min_input_size
    model = build_model(name, size, heads=("border",), preprocess="backbone")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    outputs = model.predict(pixels, verbose=0)
    assert outputs["label"].shape == (2, 1) and outputs["target_border"].shape == (2, 1)
    assert np.isfinite(outputs["label"]).all() and ((outputs["label"] > 0) & (outputs["label"] < 1)).all()


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "inceptionv3", "densenet121", "efficientnetv2b0"])
def test_keras_refuses_one_pixel_below_a_backbones_minimum(name):
    """The registry's minimum is Keras' own: one pixel less stops the builder before any layer exists."""
    from crowdskin.train.backbones import BACKBONES

    backbone = BACKBONES[name]
    with pytest.raises(ValueError, match=f"at least {backbone.min_input_size}x{backbone.min_input_size}"):
        backbone.build(backbone.min_input_size - 1)


def test_efficientnetv2_built_without_its_preprocessing_gets_the_same_from_the_registry():
    """`train.preprocess: backbone` gives EfficientNetV2-B0 what include_preprocessing=True does inside
    the model, so its ImageNet weights see the pixels they were trained on."""
    import keras

    from crowdskin.train.backbones import BACKBONES

    backbone = BACKBONES["efficientnetv2b0"]
    inside = keras.applications.EfficientNetV2B0(include_top=False, weights=None, input_shape=(32, 32, 3))
    outside = backbone.build(32)
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in outside.layers)
    outside.set_weights(inside.get_weights())  # the preprocessing layers hold no weights
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    expected = inside.predict(pixels, verbose=0)
    np.testing.assert_allclose(outside.predict(np.asarray(backbone.preprocess(pixels)), verbose=0), expected,
                               rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _job_outputs(job: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[np.ndarray], dict]:
    """history.csv, predictions.parquet, model.keras' weights and metrics.json of a finished job."""
    import io
    import zipfile

    import h5py

    # The archive's weights file, read as arrays: every weight, whatever layer holds it.
    with zipfile.ZipFile(job / "model.keras") as archive, \
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as store:
        weights: list[np.ndarray] = []
        store.visititems(lambda name, item: weights.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    metrics = json.loads((job / "metrics.json").read_text())
    return pd.read_csv(job / "history.csv"), pd.read_parquet(job / "predictions.parquet"), weights, metrics


def _assert_same_job(first: Path, second: Path) -> None:
    history_1, predictions_1, weights_1, metrics_1 = _job_outputs(first)
    history_2, predictions_2, weights_2, metrics_2 = _job_outputs(second)
    pd.testing.assert_frame_equal(history_1, history_2, check_exact=True)
    pd.testing.assert_frame_equal(predictions_1, predictions_2, check_exact=True)
    assert len(weights_1) == len(weights_2)
    for left, right in zip(weights_1, weights_2, strict=True):
        np.testing.assert_array_equal(left, right)
    assert (metrics_1["test_auc"], metrics_1["val_auc"]) == (metrics_2["test_auc"], metrics_2["val_auc"])
    assert predictions_1["score"].std() > 0  # a model that learned nothing would be equal trivially


# Six training steps per epoch at four per call (Keras would train eight), two validation batches
# at up to four per call, augmentation on: what differs with steps per call shows in every output.
STEPS_CASE = {"epochs": 3, "steps_per_epoch": 6, "validation_steps": 2, "deterministic": True, "run_eagerly": False}


def test_several_steps_per_call_train_exactly_as_one(tmp_path, caplog):
    """history.csv (loss, AUC, validation), predictions and the saved model of a job at four steps
    per call equal those at one, although the epoch's six steps are no multiple of four."""
    from crowdskin.train.job import run_request

    for name, steps in (("one", 1), ("four", 4)):
        (tmp_path / name).mkdir()
        request = _request(tmp_path / name, **STEPS_CASE)
        request["execution"] = {"steps_per_execution": steps}
        with caplog.at_level(logging.INFO, logger="crowdskin.train"):
            run_request(request)
    assert "steps_per_execution 4 runs as 3" in caplog.text
    assert "training 3 step(s) per compiled call" in caplog.text
    _assert_same_job(tmp_path / "one" / "job", tmp_path / "four" / "job")


class _InterruptedError(Exception):
    """Stands for a kill right after an epoch's checkpoint."""


@pytest.mark.parametrize("placement", ["pipeline", "model"])
def test_a_job_resumed_at_several_steps_per_call_equals_an_uninterrupted_one(tmp_path, monkeypatch, placement):
    """Interrupted after its first epoch's checkpoint and run again, a job at three steps per call
    ends with the history, predictions and model of the same job run through at one step per call:
    the resumed job goes on with the next batches and the augmentation's next random draws, in the
    input pipeline (tf.data) or inside the model (its layers' seed states, which Keras does not save)."""
    from crowdskin.train import loop
    from crowdskin.train.job import run_request

    case = {**STEPS_CASE, "augment": {"placement": placement}}
    (tmp_path / "through").mkdir()
    through = _request(tmp_path / "through", **case)
    run_request(through)

    (tmp_path / "resumed").mkdir()
    resumed = _request(tmp_path / "resumed", **case)
    resumed["execution"] = {"steps_per_execution": 3}
    backup_callback = loop._backup_callback

    def interrupted_after_first_epoch(keras, backup_dir, epochs):
        callback = backup_callback(keras, backup_dir, epochs)
        on_epoch_end = callback.on_epoch_end

        def end_then_stop(epoch, logs=None):
            on_epoch_end(epoch, logs)
            if epoch == 0:
                raise _InterruptedError

        callback.on_epoch_end = end_then_stop
        return callback

    monkeypatch.setattr(loop, "_backup_callback", interrupted_after_first_epoch)
    with pytest.raises(_InterruptedError):
        run_request(resumed)
    assert _epochs_backed_up(tmp_path / "resumed" / "job") == 1
    monkeypatch.setattr(loop, "_backup_callback", backup_callback)
    run_request(resumed)
    _assert_same_job(tmp_path / "through" / "job", tmp_path / "resumed" / "job")


@pytest.mark.parametrize("stopped_in", ["first weights", "second record"])
def test_a_job_stopped_while_writing_its_checkpoint_resumes_as_if_never_stopped(tmp_path, monkeypatch, stopped_in):
    """Ctrl-C (or a kill) while a checkpoint is written: during the first epoch's weights (Keras'
    own backup then left a truncated file with nothing to fall back to, and every later attempt
    failed in h5py), or after the second epoch's weights but before its record. Run again, the job
    ends as the same job run through."""
    from crowdskin.train import loop
    from crowdskin.train.job import run_request

    (tmp_path / "through").mkdir()
    run_request(_request(tmp_path / "through", **STEPS_CASE))

    (tmp_path / "stopped").mkdir()
    stopped = _request(tmp_path / "stopped", **STEPS_CASE)
    backup = tmp_path / "stopped" / "job" / "checkpoint" / "backup"
    write_json = loop._write_json

    if stopped_in == "first weights":
        def save_weights_then_stop(self, filepath, overwrite=True):
            Path(filepath).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(88))  # 96 bytes, as the interrupted write left
            raise KeyboardInterrupt

        import keras
        monkeypatch.setattr(keras.Model, "save_weights", save_weights_then_stop)
    else:
        def record_then_stop(path, payload):
            if path.name == "training_metadata.json" and payload["epoch"] == 2:
                raise KeyboardInterrupt
            write_json(path, payload)

        monkeypatch.setattr(loop, "_write_json", record_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_request(stopped)
    assert _epochs_backed_up(tmp_path / "stopped" / "job") == (0 if stopped_in == "first weights" else 1)
    assert any(backup.glob("*.weights.h5"))  # what the stop left behind
    monkeypatch.undo()
    run_request(stopped)
    _assert_same_job(tmp_path / "through" / "job", tmp_path / "stopped" / "job")

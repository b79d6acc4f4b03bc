"""Training on every installed Keras 3 backend (tensorflow, jax, torch): one tiny multi-task job
per backend (smallcnn at 32 px, one step), the masked loss against a hand computation, the same
folds and test lesions everywhere, and model.keras loaded by the next backend.

A backend is fixed per process (KERAS_BACKEND is read at keras' first import), so each backend runs
in its own subprocess; a backend that is not installed is skipped with the install command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdskin.config import section
from crowdskin.train.backend import BACKENDS, installed
from crowdskin.train.cache import write_cache
from crowdskin.train.settings import job_settings
from crowdskin.train.splits import make_folds
from crowdskin.train.tasks import task_grid

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
TASK = "multitask-crowd-asymmetry"
TINY = {"input_size": 32, "batch_size": 4, "epochs": 1, "steps_per_epoch": 1, "validation_steps": 1,
        "backbones": ["smallcnn"], "weights": "none"}
N_IMAGES = 30

# Runs in the backend's own process: the job, the loss on hand-made arrays, and (when given) the
# previous backend's model.keras on this backend. Prints one JSON line.
IN_BACKEND = r"""
import json, logging, sys
import numpy as np
logging.basicConfig(level=logging.INFO)
from pathlib import Path
args = json.loads(sys.argv[1])
from crowdskin.train.job import run_request
request = json.loads(Path(args["request"]).read_text())
run_request(request)  # selects the backend before keras is imported
import keras
from crowdskin.train.models import MaskedMSE, compile_model, label_pairs
pair = np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0], [np.nan, 0.0]], np.float32)
prediction = np.array([[0.5], [10.0], [0.0], [3.0]], np.float32)
labels = np.array([[1.0], [0.0], [1.0], [0.0]], np.float32)
scores = np.array([[0.8], [0.3], [0.6], [0.1]], np.float32)
inputs = keras.Input((2,))
model = keras.Model(inputs, {"label": keras.layers.Dense(1, activation="sigmoid", name="label")(inputs),
                             "target": keras.layers.Dense(1, name="target")(inputs)})
compile_model(model, optimizer=keras.optimizers.RMSprop(),
              loss_weights={"label": 0.5, "target": 0.5})
total = model.compute_loss(y={"label": label_pairs(labels, {0: 0.75, 1: 1.5}), "target": pair},
                           y_pred={"label": scores, "target": prediction})
result = {"backend": keras.backend.backend(), "masked_mse": float(MaskedMSE()(pair, prediction)),
          "total_loss": float(keras.ops.convert_to_numpy(total))}
if args.get("load"):
    loaded = keras.models.load_model(args["load"], compile=False)
    cache = np.load(args["cache"])
    result["loaded_scores"] = np.asarray(loaded.predict(cache.astype(np.float32), verbose=0)["label"]).ravel().tolist()
print("RESULT " + json.dumps(result))
"""


def _hand_loss() -> tuple[float, float]:
    """The masked MSE (rows 1 and 3 unavailable, row 3's target NaN) and the 0.5/0.5 total."""
    masked = ((0.5 - 0.0) ** 2 + (0.0 - 1.0) ** 2) / 2
    bce = -np.array([np.log(0.8), np.log(0.7), np.log(0.6), np.log(0.9)]) * np.array([1.5, 0.75, 1.5, 0.75])
    return masked, 0.5 * masked + 0.5 * bce.mean()


def _request(directory: Path, backend: str) -> Path:
    """A multi-task job on random pixels with half of the annotations missing, for `backend`."""
    directory.mkdir(parents=True)
    ids = [f"T{i:03d}" for i in range(N_IMAGES)]
    images = pd.DataFrame({"image_id": ids, "dataset": "test", "image_path": "x.png",
                           "abnormal": pd.array([i % 3 == 0 for i in range(N_IMAGES)], dtype="Int8"),
                           "group_id": pd.NA})
    rng = np.random.default_rng(0)
    cache = rng.integers(0, 255, (N_IMAGES, 32, 32, 3), dtype=np.uint8)
    targets = pd.DataFrame({"image_id": ids, "source": "crowd", "feature": "asymmetry",
                            "target": np.where(np.arange(N_IMAGES) % 2 == 0, rng.normal(size=N_IMAGES), np.nan),
                            "available": np.arange(N_IMAGES) % 2 == 0})
    inputs = {name: directory / file for name, file in (
        ("images", "images.parquet"), ("folds", "folds.parquet"), ("cache_array", "cache.npy"),
        ("cache_index", "cache.parquet"), ("experiment", "experiment.json"), ("targets", "targets.parquet"))}
    images.to_parquet(inputs["images"])
    make_folds(images.assign(abnormal=images["abnormal"].astype(int)), scheme="kfold", n_folds=5,
               seed=0).to_parquet(inputs["folds"])
    write_cache(cache, pd.DataFrame({"image_id": ids, "row": np.arange(N_IMAGES),
                                     "reason": pd.array([None] * N_IMAGES, dtype="string")}),
                inputs["cache_array"], inputs["cache_index"])
    targets.to_parquet(inputs["targets"])
    inputs["experiment"].write_text(json.dumps({"tracking_uri": f"sqlite:///{directory / 'mlflow.db'}",
                                                "experiment": "test"}))
    settings = section("train", {**TINY, "backend": backend})
    task = {t.name: t for t in task_grid(settings)}[TASK]
    request = {"task": TASK, "backbone": "smallcnn", "fold": 0, "seed": 0, "threads": 1, "save_model": True,
               "settings": job_settings(settings, task, "smallcnn"), "out_dir": str(directory / "job"),
               "log": str(directory / "job.log"), "inputs": {k: str(v) for k, v in inputs.items()}}
    path = directory / "request.json"
    path.write_text(json.dumps(request))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Each installed backend's job and loss, in BACKENDS order; each loads the previous one's model."""
    results: dict[str, dict] = {}
    previous: Path | None = None
    for backend in BACKENDS:
        if not installed(backend):
            continue
        directory = tmp_path_factory.mktemp(backend)
        request = _request(directory / "run", backend)
        args = {"request": str(request), "cache": str(directory / "run" / "cache.npy"),
                "load": str(previous / "job" / "model.keras") if previous else None}
        done = subprocess.run([sys.executable, "-c", IN_BACKEND, json.dumps(args)], capture_output=True, text=True,
                              timeout=300)
        log = done.stderr
        assert done.returncode == 0, f"{backend}: {log[-3000:]}"
        [line] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        results[backend] = {**json.loads(line[len("RESULT "):]), "dir": directory / "run", "log": log,
                            "loaded_from": previous}
        previous = directory / "run"
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_job_and_masked_loss_on_each_backend(runs, backend):
    """Break: MaskedMSE without `ops.where(available > 0, ...)` (the NaN of a missing target leaks)."""
    if not installed(backend):
        pytest.skip(f"{backend} is not installed (`make install BACKEND={backend}`)")
    run = runs[backend]
    assert run["backend"] == backend and f"Keras on {backend} ready" in run["log"]
    predictions = pd.read_parquet(run["dir"] / "job" / "predictions.parquet")
    assert len(predictions) == N_IMAGES and predictions["image_id"].is_unique
    assert predictions["score"].between(0, 1).all() and predictions["prediction_asymmetry"].notna().all()
    assert set(predictions["split"]) == {"train", "val", "test"}
    masked, total = _hand_loss()
    assert run["masked_mse"] == pytest.approx(masked, rel=1e-6)
    assert run["total_loss"] == pytest.approx(total, rel=1e-5)


def test_same_seed_same_folds_and_test_lesions_on_every_backend(runs):
    if len(runs) < 2:
        pytest.skip(f"only {', '.join(runs)} installed: nothing to compare with")
    splits = {backend: pd.read_parquet(run["dir"] / "job" / "predictions.parquet")[["image_id", "split"]]
              .sort_values("image_id", ignore_index=True) for backend, run in runs.items()}
    first, *others = splits.values()
    for other in others:
        pd.testing.assert_frame_equal(first, other)
    folds = [pd.read_parquet(run["dir"] / "folds.parquet") for run in runs.values()]
    for other in folds[1:]:
        pd.testing.assert_frame_equal(folds[0], other)


def test_model_keras_loads_on_another_backend(runs):
    """The next backend in BACKENDS order loads the previous one's model.keras and scores alike."""
    pairs = [(backend, run) for backend, run in runs.items() if run["loaded_from"] is not None]
    if not pairs:
        pytest.skip("one backend installed: no model to load across backends")
    for _backend, run in pairs:
        saved = pd.read_parquet(run["loaded_from"] / "job" / "predictions.parquet").set_index("image_id")
        expected = saved.loc[[f"T{i:03d}" for i in range(N_IMAGES)], "score"].to_numpy()
        np.testing.assert_allclose(run["loaded_scores"], expected, rtol=1e-4, atol=1e-5)


def test_jax_jobs_sharing_a_gpu_allocate_on_demand():
    """Catches JAX's default (75 % of the GPU taken at start) left on for jobs that share a GPU,
    or forced on jobs that do not share one."""
    if not installed("jax"):
        pytest.skip("JAX is not installed: `make install BACKEND=jax` adds it")
    probe = ("import os, sys; from crowdskin.train.backend import select; "
             "select('jax', share_gpu=sys.argv[1] == 'share'); print(os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE'))")
    environment = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    answers = [subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True,
                              env=environment).stdout.strip() for mode in ("share", "alone")]
    assert answers == ["false", "None"]


def test_a_jax_job_forked_from_the_warm_worker_gets_its_thread_flags():
    """The warm worker's server imports keras on JAX, then forks each job. A job's XLA flags (its
    thread pool) must still be set there, before JAX starts a device; after that they cannot
    change, and are left alone. Catches the flags skipped because jax was imported already: such a
    job took every core and shared no compilation-cache entry with jobs in their own process."""
    if not installed("jax"):
        pytest.skip("JAX is not installed: `make install BACKEND=jax` adds it")
    probe = """
import os
from crowdskin.train.backend import select
select("jax")
import keras  # noqa: F401 - what the worker's server imports before it forks
import crowdskin.train.models  # noqa: F401
child = os.fork()
if child == 0:
    select("jax", threads=1)
    before = os.environ["XLA_FLAGS"]
    import jax.numpy as jnp
    (jnp.ones(3) * 2).block_until_ready()
    select("jax", threads=2)
    print(before, "|", os.environ["XLA_FLAGS"], flush=True)
    os._exit(0)
os.waitpid(child, 0)
"""
    environment = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env=environment).stdout.strip()
    before, after = (part.strip() for part in answer.split("|"))
    assert "intra_op_parallelism_threads=1" in before and "--xla_cpu_multi_thread_eigen=false" in before
    assert after == before  # started: a later call changes nothing

"""A training job as a plain request (JSON), runnable in-process, as `python -m crowdskin.train.job
request.json`, or inside a warm worker (`crowdskin.train.worker`).

Request keys: task, backbone, fold, settings (the job's science settings,
crowdskin.train.settings.job_settings), seed, split_scheme (how the folds file was made: which of its
checks apply; null checks what every scheme shares), threads, out_dir, log (path or null), save_model,
check (a backbone check job, outside the grid),
inputs (images, folds, cache_array, cache_index, cache_manifest, experiment[, targets, crowd_pool, crowd_labels, votes,
annotations, base_model, weights]) and execution (how it runs, never its result: weights_dir, warm_worker,
jobs_per_gpu, steps_per_execution, compile_cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from crowdskin.train.backend import select as select_backend
from crowdskin.train.cache import read_cache
from crowdskin.train.examples import job_annotator_answers, job_examples
from crowdskin.train.kinds import load_plugins
from crowdskin.train.loop import JobSpec, train_job
from crowdskin.train.splits import read_folds, trainable_lesions
from crowdskin.train.tasks import Task
from crowdskin.train.tracking import defer_logging, run_namespace, tracking_uri
from crowdskin.train.weights import resolve_weights

log = logging.getLogger(__name__)


def run_request(request: dict[str, Any]) -> dict[str, Any]:
    """Read the job's inputs, build its examples and train it. Returns metrics.json's payload."""
    settings = request["settings"]
    inputs = request["inputs"]
    execution = request.get("execution", {})
    if settings.get("kind_module"):  # a kind of a plug-in module registers itself on import
        load_plugins([settings["kind_module"]])
    task = Task.from_dict(settings["task"])
    # Before anything imports keras: the backend is fixed at keras' first import.
    select_backend(settings.get("backend"), threads=int(request.get("threads", 1)),
                   deterministic=bool(settings.get("deterministic")),
                   share_gpu=int(execution.get("jobs_per_gpu") or 1) > 1)
    backbone, fold = request["backbone"], int(request["fold"])
    # Missing weights stop the job here, before TensorFlow is even imported.
    weights = resolve_weights(settings["weights"], backbone, execution.get("weights_dir"))
    lesions, _ = trainable_lesions(pd.read_parquet(inputs["images"]))
    folds, split_hash, stale_hash = read_folds(inputs["folds"], scheme=request.get("split_scheme"))
    targets = pd.read_parquet(inputs["targets"]) if inputs.get("targets") else None
    crowd_labels = pd.read_parquet(inputs["crowd_labels"]) if inputs.get("crowd_labels") else None
    crowd_pool = pd.read_parquet(inputs["crowd_pool"]) if inputs.get("crowd_pool") else None
    votes = pd.read_parquet(inputs["votes"]) if inputs.get("votes") else None
    examples, notes = job_examples(folds, lesions, task, fold, settings=settings, targets=targets,
                                   crowd_labels=crowd_labels, crowd_pool=crowd_pool, votes=votes,
                                   seed=request["seed"])
    if stale_hash:
        log.warning("%s", stale_hash)
        notes.warnings.append(stale_hash)
    annotators = job_annotator_answers(
        examples, task, fold, notes, settings=settings, seed=request["seed"], votes=votes,
        annotations=pd.read_parquet(inputs["annotations"]) if inputs.get("annotations") else None)
    version = hashlib.sha256()
    for name in ("images", "targets", "crowd_labels", "crowd_pool", "votes", "annotations"):
        if inputs.get(name):
            version.update(Path(inputs[name]).read_bytes())
    experiment = json.loads(Path(inputs["experiment"]).read_text()) if inputs.get("experiment") else {}
    cache_array, cache_index = read_cache(inputs["cache_array"], inputs["cache_index"],
                                          manifest=inputs.get("cache_manifest"),
                                          labels=lesions.set_index("image_id")["abnormal"])
    threads = int(request.get("threads", 1))
    steps_per_execution = int(execution.get("steps_per_execution") or 1)
    spec = JobSpec(
        task=task, backbone=backbone, fold=fold, settings=settings, seed=int(request["seed"]),
        split_hash=split_hash, out_dir=Path(request["out_dir"]),
        weights=weights, base_model=Path(inputs["base_model"]) if inputs.get("base_model") else None,
        threads=threads, data_version=version.hexdigest()[:16],
        mlflow_uri=experiment.get("tracking_uri"), experiment=experiment.get("experiment", "default"),
        mlflow_namespace=experiment.get("namespace") or run_namespace(),
        defer_mlflow=defer_logging(tracking_uri(experiment.get("tracking_uri"))),
        save_model=bool(request["save_model"]), check=bool(request.get("check", False)),
        steps_per_execution=steps_per_execution,
        compile_cache=execution.get("compile_cache"),
        execution_tags={"compile_cache": str(execution.get("compile_cache") or ""),
                        "threads": str(threads), "warm_worker": str(bool(execution.get("warm_worker"))).lower(),
                        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
                        "jobs_per_gpu": str(execution.get("jobs_per_gpu") or 1),
                        "steps_per_execution": str(steps_per_execution)},
    )
    metrics = train_job(spec, examples, notes, cache_array, cache_index, annotators=annotators)
    log.info("done: test AUC %s, MLflow run %s%s", metrics["test_auc"], metrics["mlflow_run_id"],
             f" (logging failed: {metrics['mlflow_error']})" if metrics["mlflow_error"] else "")
    return metrics


def log_to(path: str | None) -> None:
    """Send Python logging and the C++ runtime's stderr (fd 2) to the job's log file."""
    if not path:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    # Keras prints progress to stdout and TensorFlow's C++ runtime writes to fd 2 directly.
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle
    logging.basicConfig(stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m crowdskin.train.job REQUEST.json", file=sys.stderr)
        return 2
    request = json.loads(Path(args[0]).read_text())
    log_to(request.get("log"))
    run_request(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What each training job receives of the validated config: the slice of settings that changes
its result, and nothing else.

A rule hands a job exactly this slice as `params`, so Snakemake re-trains exactly the jobs whose
slice changed (adding a multi-task source re-trains no baseline; a new crowd label column re-trains
only the crowdsim jobs). Each task kind adds what it reads (`crowdskin.train.kinds`). The same
slice is the job's resume fingerprint and its MLflow parameters. Execution settings (threads,
GPUs, memory, time limit) are never part of it.
"""

from __future__ import annotations

from typing import Any

from crowdskin.train import kinds
from crowdskin.train.kinds import kind_of
from crowdskin.train.tasks import Task, input_size

# Train settings every job's result depends on. The Keras backend is one: its kernels, random
# streams and initialisers differ, so the same seed gives other weights on another backend.
SHARED_KEYS = (
    "backend", "weights", "preprocess", "optimizer", "learning_rate", "batch_size", "epochs", "steps_per_epoch",
    "validation_steps", "class_weight", "augment", "run_eagerly", "mixed_precision", "xla", "deterministic",
)


def job_settings(train: dict[str, Any], task: Task, backbone: str) -> dict[str, Any]:
    """The science settings of one (task, backbone) job, from the validated `train` section: the
    settings every job shares, its task, its input size, and what its kind reads (the loss weights
    of a model with heads, a crowd label column, a learning rate of its own)."""
    kind = kind_of(task.kind)
    settings = {key: train[key] for key in SHARED_KEYS}
    settings["task"] = task.to_dict()
    settings["input_size"] = input_size(train, backbone)
    if not kind.__module__.startswith(f"{kinds.__name__}."):
        # A kind of a plug-in module: the job imports it before it asks for the kind.
        settings["kind_module"] = kind.__module__
    return kind.settings(task, train, settings)


def split_seed(config: dict[str, Any]) -> int:
    """`split.seed`, or the top-level seed where it is null."""
    seed = config["split"]["seed"]
    return int(config["seed"] if seed is None else seed)


# A backbone check proves the code path, not the science: one step of a small batch, no augmentation.
CHECK_OVERRIDES = {"batch_size": 4, "epochs": 1, "steps_per_epoch": 1, "validation_steps": 1, "run_eagerly": True}


def check_settings(train: dict[str, Any], task: Task, backbone: str) -> dict[str, Any]:
    """The science settings of a backbone check job: the grid's, shrunk to one tiny step."""
    shrunk = {**train, **CHECK_OVERRIDES, "augment": {**train["augment"], "enabled": False}}
    return job_settings(shrunk, task, backbone)

"""The task grid, derived from config alone (no data is read, so the DAG exists before the data).

Task names are path-safe and sort the MLflow UI sensibly:

- `baseline`: classifier trained on expert labels. It is also CROWDSIM experiment (a): it trains on
  the expert-labelled lesions only (crowd-labelled candidates are left out of its training set).
- `multitask-<source>-<feature>`: baseline + a linear head regressing one annotation target
  (`multitask-crowd-asymmetry`, ...).
- `random`: the randomized control: a multi-task model whose targets are uniform [0, 1] draws.
- `crowdsim-retrain`: CROWDSIM (b), trained from scratch on expert-labelled plus crowd-labelled images.
- `crowdsim-incremental`: CROWDSIM (c), the fold's trained `baseline` fine-tuned on the crowd-labelled images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crowdskin.train.backbones import BACKBONES


@dataclass(frozen=True)
class Task:
    """One row of the grid: what the model learns besides the label."""

    name: str
    kind: str  # baseline | multitask | random | crowdsim-retrain | crowdsim-incremental
    source: str | None = None
    feature: str | None = None

    @property
    def multitask(self) -> bool:
        return self.kind in ("multitask", "random")

    @property
    def uses_crowd_labels(self) -> bool:
        return self.kind.startswith("crowdsim")


def task_grid(train_config: dict[str, Any]) -> list[Task]:
    """All tasks the config asks for, in a stable order."""
    tasks: list[Task] = [Task("baseline", "baseline")]
    multitask = train_config["multitask"]
    for source in multitask["sources"]:
        for feature in multitask["features"]:
            tasks.append(Task(f"multitask-{source}-{feature}", "multitask", source, feature))
    if train_config["random_control"]:
        tasks.append(Task("random", "random", "random", "uniform"))
    if train_config["crowdsim"]["enabled"]:
        tasks.append(Task("crowdsim-retrain", "crowdsim-retrain"))
        tasks.append(Task("crowdsim-incremental", "crowdsim-incremental"))
    return tasks


def input_size(train_config: dict[str, Any], backbone: str) -> int:
    """The configured input size for `backbone`, checked against what the backbone accepts."""
    size = int(train_config["input_size_by_backbone"].get(backbone, train_config["input_size"]))
    minimum = BACKBONES[backbone].min_input_size
    if size < minimum:
        raise ValueError(
            f"train.input_size {size} is below {backbone}'s minimum {minimum}; "
            f"set train.input_size_by_backbone.{backbone}"
        )
    return size

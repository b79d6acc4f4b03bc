"""The task grid, derived from config alone (no data is read, so the DAG exists before the data).

A task is one row of the grid: a name (path-safe, it names the results folder and the MLflow run)
and the kind of model it trains (`crowdskin.train.kinds`: each kind is one class in one file that
says which tasks the config enables, which tables its jobs read, its examples, heads and start).
The grid is every registered kind's tasks, in the kinds' table order:

- `baseline`: classifier trained on expert labels (also CROWDSIM experiment (a)).
- `multitask-<source>-<feature>`: + a linear head regressing one annotation target (ENHANCE).
- `multihead-<source>`: + one head per ABC feature of one source, trained together.
- `disagreement-<source>`: + heads for each feature's consensus and its spread across annotators.
- `random`: the randomized control: a multi-task model whose target is uniform [0, 1] draws.
- `crowdsim-retrain`, `crowdsim-soft`, `crowdsim-incremental`: CROWDSIM (b) with hard and with
  soft crowd labels, and (c) the fold's baseline fine-tuned on the crowd-labelled images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from crowdskin.train.backbones import BACKBONES


@dataclass(frozen=True)
class Task:
    """One row of the grid: what the model learns besides the label.

    `features` lists the annotation features of a kind with several targets (empty otherwise).
    """

    name: str
    kind: str
    source: str | None = None
    feature: str | None = None
    features: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))

    def to_dict(self) -> dict[str, Any]:
        """The task as a job's settings carry it; `features` only where a kind has them, so the
        single-target kinds' settings (and so their jobs' identity) are what they were."""
        values = asdict(self)
        if not self.features:
            del values["features"]
        else:
            values["features"] = list(self.features)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Task:
        return cls(**{**values, "features": tuple(values.get("features", ()))})


def task_grid(train_config: dict[str, Any]) -> list[Task]:
    """All tasks the config asks for, in the kinds' table order (then as each kind lists them)."""
    from crowdskin.train.kinds import load_plugins, registered_kinds

    load_plugins(train_config.get("plugins", ()))
    return [task for kind in registered_kinds() for task in kind.tasks(train_config)]


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

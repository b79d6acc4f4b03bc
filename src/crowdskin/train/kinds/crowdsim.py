"""CROWDSIM: training on the crowd's labels of the candidate pool (`train.crowdsim`).

- `crowdsim-retrain` (b): from scratch on the expert-labelled images plus the pool's training part
  with crowd labels (`train.crowdsim.label`, a column of crowd_labels.parquet).
- `crowdsim-incremental` (c): the fold's trained baseline fine-tuned on the pool's training part alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pandas as pd

from crowdskin.train.kinds.base import CROWD_LABELS, ExampleInputs, ExamplesError, TaskKind, register
from crowdskin.train.tasks import Task


class CrowdLabelled(TaskKind):
    """A kind that trains on the crowd pool's labels: the column `settings["crowd_label"]`."""

    reads: ClassVar[frozenset[str]] = frozenset({CROWD_LABELS})

    @classmethod
    def settings(cls, task: Task, train: Mapping[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
        shared = super().settings(task, train, shared)
        shared["crowd_label"] = train["crowdsim"]["label"]
        return shared

    @classmethod
    def crowd_labels(cls, crowd_labels: pd.DataFrame, inputs: ExampleInputs) -> pd.DataFrame:
        column = inputs.settings["crowd_label"]
        if column not in crowd_labels.columns:
            raise ExamplesError(
                f"crowd_labels table has no column {column!r} (train.crowdsim.label); "
                f"columns: {list(crowd_labels.columns)}"
            )
        return crowd_labels[["image_id", column]].rename(columns={column: "crowd_label"})


@register
class CrowdsimRetrain(CrowdLabelled):
    name: ClassVar[str] = "crowdsim-retrain"
    order: ClassVar[int] = 40

    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        return [Task(cls.name, cls.name)] if train["crowdsim"]["enabled"] else []

    @classmethod
    def choose(cls, expert: pd.DataFrame, crowd_train: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([expert, crowd_train], ignore_index=True)

    @classmethod
    def references(cls, task: Task, task_names: Sequence[str]) -> list[str]:
        # CROWDSIM's question besides "better than the baseline?": is retraining better than fine-tuning?
        return ["crowdsim-incremental"]


@register
class CrowdsimIncremental(CrowdLabelled):
    name: ClassVar[str] = "crowdsim-incremental"
    order: ClassVar[int] = 44
    starts_from: ClassVar[str | None] = "baseline"

    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        return [Task(cls.name, cls.name)] if train["crowdsim"]["enabled"] else []

    @classmethod
    def settings(cls, task: Task, train: Mapping[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
        shared = super().settings(task, train, shared)
        if train["crowdsim"]["incremental_learning_rate"]:
            shared["learning_rate"] = train["crowdsim"]["incremental_learning_rate"]
        return shared

    @classmethod
    def choose(cls, expert: pd.DataFrame, crowd_train: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([expert[expert["split"] != "train"], crowd_train], ignore_index=True)


class RetrainedWithThePool(TaskKind):
    """A variant of CROWDSIM's retraining (b): its lesions (the expert-labelled images plus the
    pool's training part), compared with `crowdsim-retrain`; what the pool's images train with is
    the variant's."""

    @classmethod
    def references(cls, task: Task, task_names: Sequence[str]) -> list[str]:
        return [CrowdsimRetrain.name]

    @classmethod
    def choose(cls, expert: pd.DataFrame, crowd_train: pd.DataFrame) -> pd.DataFrame:
        return CrowdsimRetrain.choose(expert, crowd_train)

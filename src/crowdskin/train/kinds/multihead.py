"""`multihead-<source>`: one model regressing every ABC feature of one source together, one head per
feature (`train.multihead`), beside ENHANCE's single-feature models and their ensemble, which it
is compared with: does one model with three targets do what three models and their average do?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pandas as pd

from crowdskin.train.kinds.base import TARGETS, ExampleInputs, ExampleNotes, HeadTargets, TaskKind, register
from crowdskin.train.kinds.multitask import consensus_column, note_annotated
from crowdskin.train.tasks import Task


@register
class MultiHead(TaskKind):
    name: ClassVar[str] = "multihead"
    order: ClassVar[int] = 12
    reads: ClassVar[frozenset[str]] = frozenset({TARGETS})

    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        """One task per source of the kind's own config section (`train.<kind name>`)."""
        section = train[cls.name]
        return [Task(f"{cls.name}-{source}", cls.name, source, features=tuple(section["features"]))
                for source in section["sources"]]

    @classmethod
    def heads(cls, task: Task) -> tuple[str, ...]:
        return task.features

    @classmethod
    def references(cls, task: Task, task_names: Sequence[str]) -> list[str]:
        return [f"ensemble-{task.source}"]

    @classmethod
    def head_targets(cls, task: Task, chosen: pd.DataFrame, inputs: ExampleInputs,
                     notes: ExampleNotes) -> dict[str, HeadTargets]:
        heads = {feature: consensus_column(inputs.targets, task, feature, chosen) for feature in task.features}
        note_annotated(task, heads, chosen, notes)
        return heads

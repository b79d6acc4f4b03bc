"""`disagreement-<source>`: the crowd-disagreement study's proposal, annotator disagreement as extra
outputs. Per ABC feature of one source, one head for the consensus (the mean of the annotators'
z-scores) and one for its spread (their population standard deviation, the crowd stage's `std`
column, defined where at least two annotators scored the lesion), `train.disagreement`.
Compared with `multihead-<source>`, the same consensus heads without the spread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pandas as pd

from crowdskin.train.kinds.base import ExampleInputs, ExampleNotes, HeadTargets, register
from crowdskin.train.kinds.multihead import MultiHead
from crowdskin.train.kinds.multitask import consensus_column, note_annotated
from crowdskin.train.tasks import Task

SPREAD_SUFFIX = "_std"  # a spread head's name: the feature's, with this suffix


@register
class Disagreement(MultiHead):
    """MultiHead's tasks (from `train.disagreement`), with a spread head beside each feature's."""

    name: ClassVar[str] = "disagreement"
    order: ClassVar[int] = 14

    @classmethod
    def heads(cls, task: Task) -> tuple[str, ...]:
        return tuple(head for feature in task.features for head in (feature, feature + SPREAD_SUFFIX))

    @classmethod
    def references(cls, task: Task, task_names: Sequence[str]) -> list[str]:
        return [f"multihead-{task.source}"]

    @classmethod
    def head_targets(cls, task: Task, chosen: pd.DataFrame, inputs: ExampleInputs,
                     notes: ExampleNotes) -> dict[str, HeadTargets]:
        heads: dict[str, HeadTargets] = {}
        for feature in task.features:
            heads[feature] = consensus_column(inputs.targets, task, feature, chosen)
            heads[feature + SPREAD_SUFFIX] = consensus_column(inputs.targets, task, feature, chosen, column="std")
        note_annotated(task, heads, chosen, notes)
        return heads

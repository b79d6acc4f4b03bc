"""`random`: the randomized control, a multi-task model whose target is a uniform [0, 1] draw per
lesion (`train.random_control`): what a second head gains without any annotation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from crowdskin.train.kinds.base import ExampleInputs, ExampleNotes, HeadTargets, TaskKind, register
from crowdskin.train.tasks import Task


@register
class RandomControl(TaskKind):
    name: ClassVar[str] = "random"
    order: ClassVar[int] = 30
    randomized_control: ClassVar[bool] = True

    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        return [Task("random", cls.name, "random", "uniform")] if train["random_control"] else []

    @classmethod
    def heads(cls, task: Task) -> tuple[str, ...]:
        return (task.feature or "",)

    @classmethod
    def head_targets(cls, task: Task, chosen: pd.DataFrame, inputs: ExampleInputs,
                     notes: ExampleNotes) -> dict[str, HeadTargets]:
        rng = np.random.default_rng([inputs.seed, inputs.fold])
        return {task.feature or "": (rng.uniform(0.0, 1.0, len(chosen)), np.ones(len(chosen), dtype=bool))}

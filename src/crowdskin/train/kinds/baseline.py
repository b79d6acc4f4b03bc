"""`baseline`: the classifier trained on expert labels alone. It is also CROWDSIM experiment (a):
the crowd pool's training and validation images are left out of its training set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from crowdskin.train.kinds.base import TaskKind, register
from crowdskin.train.tasks import Task


@register
class Baseline(TaskKind):
    name: ClassVar[str] = "baseline"
    order: ClassVar[int] = 0
    truth_checked: ClassVar[bool] = True

    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        return [Task("baseline", cls.name)]

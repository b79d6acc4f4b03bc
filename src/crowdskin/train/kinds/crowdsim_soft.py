"""`crowdsim-soft`: CROWDSIM's retraining (b) with a soft crowd label, the probability that the
image is abnormal as the crowd sees it, instead of the rounded label (`train.crowdsim.soft`):
`vote_share`, the share of the kept votes that gave it the abnormal anchor's label, or `posterior`,
the reliability model's (Dawid-Skene by default) posterior probability of abnormal. An image whose
majority vote is tied has no hard label but a soft one of 0.5, so it trains here and not in
`crowdsim-retrain`, which this kind is compared with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from crowdskin.train.kinds.base import CROWD_LABELS, ExampleInputs, ExamplesError, register
from crowdskin.train.kinds.crowdsim import RetrainedWithThePool
from crowdskin.train.tasks import Task

SOFT_LABELS = ("vote_share", "posterior")


@register
class CrowdsimSoft(RetrainedWithThePool):
    name: ClassVar[str] = "crowdsim-soft"
    order: ClassVar[int] = 42
    reads: ClassVar[frozenset[str]] = frozenset({CROWD_LABELS})

    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        crowdsim = train["crowdsim"]
        return [Task(cls.name, cls.name)] if crowdsim["enabled"] and crowdsim["soft"]["enabled"] else []

    @classmethod
    def settings(cls, task: Task, train: Mapping[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
        shared = super().settings(task, train, shared)
        shared["crowd_label"] = train["crowdsim"]["soft"]["label"]
        return shared

    @classmethod
    def crowd_labels(cls, crowd_labels: pd.DataFrame, inputs: ExampleInputs) -> pd.DataFrame:
        kind = inputs.settings["crowd_label"]
        needed = {"vote_share": ["n_votes", "votes_abnormal"], "posterior": ["p_abnormal"]}.get(kind)
        if needed is None:
            raise ExamplesError(f"train.crowdsim.soft.label is {kind!r}; it must be one of {list(SOFT_LABELS)}")
        missing = [c for c in needed if c not in crowd_labels.columns]
        if missing:
            raise ExamplesError(f"crowd_labels table lacks column(s) {missing} for the soft label {kind!r}")
        if kind == "vote_share":
            soft = crowd_labels["votes_abnormal"].astype(float) / crowd_labels["n_votes"].astype(float)
        else:
            soft = crowd_labels["p_abnormal"].astype(float)
        return pd.DataFrame({"image_id": crowd_labels["image_id"], "crowd_label": soft})

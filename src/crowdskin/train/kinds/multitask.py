"""`multitask-<source>-<feature>`: ENHANCE's multi-task model, the baseline plus a linear head
regressing one annotation feature's consensus target of one source (`train.multitask`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from crowdskin.train.kinds.base import (
    TARGETS,
    ExampleInputs,
    ExampleNotes,
    ExamplesError,
    HeadTargets,
    TaskKind,
    register,
)
from crowdskin.train.tasks import Task


def consensus_column(targets: pd.DataFrame | None, task: Task, feature: str, chosen: pd.DataFrame,
                     *, column: str = "target") -> HeadTargets:
    """One feature's `column` of the targets table (the consensus, or its spread `std`) for the
    chosen lesions: its values (0 where unavailable) and availability."""
    if targets is None:
        raise ExamplesError(f"task {task.name} needs the targets table")
    missing = {"image_id", "source", "feature", "target", "available", column} - set(targets.columns)
    if missing:
        raise ExamplesError(f"targets table lacks column(s) {sorted(missing)}")
    source = task.source or ""
    rows = targets[(targets["source"] == source) & (targets["feature"] == feature)]
    duplicated = rows["image_id"].duplicated()
    if duplicated.any():
        raise ExamplesError(
            f"targets table has several rows for image_id {rows.loc[duplicated, 'image_id'].iloc[0]!r}, "
            f"source {source!r}, feature {feature!r}"
        )
    values = rows[["image_id", column, "available"]].rename(columns={column: "value"})
    joined = chosen[["image_id"]].merge(values, on="image_id", how="left")
    flagged_without_value = joined["available"].fillna(False).astype(bool) & joined["value"].isna()
    if column == "target" and flagged_without_value.any():
        raise ExamplesError(
            f"targets table: image_id {joined.loc[flagged_without_value, 'image_id'].iloc[0]!r} "
            f"({source}/{feature}) is flagged available but its target is missing"
        )
    # A spread exists only where at least two annotators scored the lesion (NaN otherwise).
    available = joined["available"].fillna(False).astype(bool) & joined["value"].notna()
    value = joined["value"].astype(float).where(available, 0.0)
    return value.to_numpy(), available.to_numpy()


def note_annotated(task: Task, heads: dict[str, HeadTargets], chosen: pd.DataFrame, notes: ExampleNotes) -> None:
    """Count the training images each head can learn from; warn where a head has none."""
    training = (chosen["split"] == "train").to_numpy()
    for head, (_, available) in heads.items():
        n = int(available[training].sum())
        notes.counts["train_with_annotation" if len(heads) == 1 else f"train_with_{head}"] = n
        if n == 0:
            notes.warnings.append(f"no training image has a {task.source}/{head} annotation: its loss is zero")


@register
class MultiTask(TaskKind):
    name: ClassVar[str] = "multitask"
    order: ClassVar[int] = 10
    reads: ClassVar[frozenset[str]] = frozenset({TARGETS})
    in_source_ensemble: ClassVar[bool] = True
    truth_checked: ClassVar[bool] = True

    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        multitask = train["multitask"]
        return [Task(f"multitask-{source}-{feature}", cls.name, source, feature)
                for source in multitask["sources"] for feature in multitask["features"]]

    @classmethod
    def heads(cls, task: Task) -> tuple[str, ...]:
        return (task.feature or "",)

    @classmethod
    def head_targets(cls, task: Task, chosen: pd.DataFrame, inputs: ExampleInputs,
                     notes: ExampleNotes) -> dict[str, HeadTargets]:
        heads = {task.feature or "": consensus_column(inputs.targets, task, task.feature or "", chosen)}
        note_annotated(task, heads, chosen, notes)
        return heads

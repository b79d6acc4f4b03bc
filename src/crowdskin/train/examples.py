"""One job's examples: which lesions it trains, validates and tests on, with what label and target.

Test set: the fold's whole test split, identical for every task, so every model of a fold is
compared on the same lesions with their expert labels.

The crowd pool is every image of `crowd_labels.parquet` (the CROWDSIM candidates). Their expert
labels play "unknown" in training: `baseline` (= CROWDSIM (a)), the multi-task tasks and the
randomized control train and validate without them; `crowdsim-retrain` adds the pool's training
part with crowd labels; `crowdsim-incremental` fine-tunes the baseline on that part alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crowdskin.train.tasks import Task

EXAMPLE_COLUMNS = ["image_id", "split", "label", "label_source", "target", "available"]


class ExamplesError(ValueError):
    """The inputs cannot make a training set for this job (message names the table and field)."""


@dataclass
class ExampleNotes:
    """What was left out and why, logged by the job and recorded in MLflow."""

    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _targets_for(targets: pd.DataFrame, source: str, feature: str) -> pd.DataFrame:
    missing = {"image_id", "source", "feature", "target", "available"} - set(targets.columns)
    if missing:
        raise ExamplesError(f"targets table lacks column(s) {sorted(missing)}")
    chosen = targets[(targets["source"] == source) & (targets["feature"] == feature)]
    duplicated = chosen["image_id"].duplicated()
    if duplicated.any():
        raise ExamplesError(
            f"targets table has several rows for image_id {chosen.loc[duplicated, 'image_id'].iloc[0]!r}, "
            f"source {source!r}, feature {feature!r}"
        )
    return chosen[["image_id", "target", "available"]]


def job_examples(
    folds: pd.DataFrame,
    lesions: pd.DataFrame,
    task: Task,
    fold: int,
    *,
    targets: pd.DataFrame | None = None,
    crowd_labels: pd.DataFrame | None = None,
    crowd_label_column: str | None = None,
    crowd_pool: pd.DataFrame | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, ExampleNotes]:
    """Examples of (task, fold): EXAMPLE_COLUMNS, `available` being the annotation's own flag.

    `crowd_label_column` (train.crowdsim.label) is read by the crowdsim tasks only; the others need
    just the pool's image ids to leave them out. `crowd_pool` (image_id) is the pool: every image
    shown to the crowd (crowdskin.crowd.labels.candidate_pool); without it, the images with a crowd
    label are.
    """
    notes = ExampleNotes()
    if task.uses_crowd_labels and crowd_label_column is None:
        raise ExamplesError(f"task {task.name} needs crowd_label_column (train.crowdsim.label)")
    in_fold = folds[folds["fold"] == fold]
    if in_fold.empty:
        raise ExamplesError(f"fold {fold} is not in the folds table (folds: {sorted(folds['fold'].unique())})")
    table = in_fold[["image_id", "split"]].merge(
        lesions[["image_id", "abnormal"]], on="image_id", how="left", validate="one_to_one"
    )
    if table["abnormal"].isna().any():
        unknown = table.loc[table["abnormal"].isna(), "image_id"].iloc[0]
        raise ExamplesError(f"folds table names image_id {unknown!r}, which has no known abnormal label")
    table["label"] = table["abnormal"].astype(float)
    table["label_source"] = "expert"

    pool_ids: set[str] = set()
    crowd = pd.DataFrame(columns=["image_id", "crowd_label"])
    if crowd_labels is not None and len(crowd_labels):
        if crowd_label_column is not None and crowd_label_column not in crowd_labels.columns:
            raise ExamplesError(
                f"crowd_labels table has no column {crowd_label_column!r} (train.crowdsim.label); "
                f"columns: {list(crowd_labels.columns)}"
            )
        pool_ids = set(crowd_labels["image_id"].astype(str))
        if crowd_label_column is not None:
            crowd = crowd_labels[["image_id", crowd_label_column]].rename(columns={crowd_label_column: "crowd_label"})
    if crowd_pool is not None:
        pool_ids = set(crowd_pool["image_id"].astype(str))
    in_pool = table["image_id"].isin(pool_ids)
    notes.counts["crowd_pool_in_fold"] = int(in_pool.sum())

    expert_part = table[~in_pool | (table["split"] == "test")]
    pool_train = table[in_pool & (table["split"] == "train")].merge(crowd, on="image_id", how="left")
    unlabelled = pool_train["crowd_label"].isna()
    pool_train = pool_train[~unlabelled].assign(label=lambda d: d["crowd_label"].astype(float), label_source="crowd")
    pool_train = pool_train.drop(columns="crowd_label")

    if task.kind == "crowdsim-retrain":
        chosen = pd.concat([expert_part, pool_train], ignore_index=True)
    elif task.kind == "crowdsim-incremental":
        chosen = pd.concat([expert_part[expert_part["split"] != "train"], pool_train], ignore_index=True)
    else:
        chosen = expert_part
    if task.uses_crowd_labels:
        notes.counts["crowd_train_without_crowd_label"] = int(unlabelled.sum())
        notes.counts["crowd_train"] = len(pool_train)
        if unlabelled.any():
            notes.warnings.append(
                f"{int(unlabelled.sum())} crowd-pool training images have no {crowd_label_column} and were left out"
            )
        if pool_train.empty:
            notes.warnings.append("no crowd-labelled training images in this fold")
    if not task.uses_crowd_labels or task.kind == "crowdsim-retrain":
        notes.counts["crowd_pool_left_out_of_train_val"] = int((in_pool & (table["split"] != "test")).sum())

    chosen = chosen.drop(columns="abnormal").reset_index(drop=True)
    if task.kind == "random":
        rng = np.random.default_rng([seed, fold])
        chosen["target"] = rng.uniform(0.0, 1.0, len(chosen))
        chosen["available"] = True
    elif task.kind == "multitask":
        if targets is None:
            raise ExamplesError(f"task {task.name} needs the targets table")
        chosen = chosen.merge(_targets_for(targets, task.source or "", task.feature or ""), on="image_id", how="left")
        flagged_without_value = chosen["available"].fillna(False).astype(bool) & chosen["target"].isna()
        if flagged_without_value.any():
            raise ExamplesError(
                f"targets table: image_id {chosen.loc[flagged_without_value, 'image_id'].iloc[0]!r} "
                f"({task.source}/{task.feature}) is flagged available but its target is missing"
            )
        chosen["available"] = chosen["available"].fillna(False).astype(bool)
        chosen["target"] = chosen["target"].astype(float).where(chosen["available"], 0.0)
        n_annotated = int(chosen.loc[chosen["split"] == "train", "available"].sum())
        notes.counts["train_with_annotation"] = n_annotated
        if n_annotated == 0:
            notes.warnings.append(
                f"no training image has a {task.source}/{task.feature} annotation: the annotation loss is zero"
            )
    else:
        chosen["target"] = 0.0
        chosen["available"] = False
    for split in ("train", "val", "test"):
        notes.counts[f"n_{split}"] = int((chosen["split"] == split).sum())
        if notes.counts[f"n_{split}"] == 0 and not (split == "train" and task.kind == "crowdsim-incremental"):
            raise ExamplesError(f"task {task.name}, fold {fold}: no {split} examples")
    return chosen[EXAMPLE_COLUMNS], notes


def balanced_class_weights(labels: np.ndarray) -> dict[int, float]:
    """n / (2 n_c), as sklearn's `balanced`; a class absent from training gets weight 1."""
    labels = np.asarray(labels).astype(int)
    n = len(labels)
    counts = np.bincount(labels, minlength=2)
    return {c: (n / (2.0 * counts[c]) if counts[c] else 1.0) for c in (0, 1)}

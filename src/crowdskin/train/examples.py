"""One job's examples: which lesions it trains, validates and tests on, with what label and targets.

Test set: the fold's whole test split, identical for every task, so every model of a fold is
compared on the same lesions with their expert labels.

The crowd pool is every image of `crowd_labels.parquet` (the CROWDSIM candidates). Their expert
labels play "unknown" in training: the expert-only kinds train and validate without them; the
kinds that read crowd labels add the pool's training part with the label their kind gives it.
Which part each kind trains on, and which annotation targets its heads learn, is the kind's
(`crowdskin.train.kinds`); this module builds what every kind shares.

Layout: EXAMPLE_COLUMNS, then per head `target_<head>` and `available_<head>` (`head_columns`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crowdskin.train.kinds import (
    CROWD_LABELS,
    AnnotatorAnswers,
    ExampleInputs,
    ExampleNotes,
    ExamplesError,
    kind_of,
)
from crowdskin.train.tasks import Task

EXAMPLE_COLUMNS = ["image_id", "split", "label", "label_source"]

__all__ = ["EXAMPLE_COLUMNS", "ExampleNotes", "ExamplesError", "balanced_class_weights", "head_columns",
           "job_annotator_answers", "job_examples", "trained_labels"]


def head_columns(head: str) -> tuple[str, str]:
    """The examples' (target, availability) columns of one head."""
    return f"target_{head}", f"available_{head}"


def job_examples(
    folds: pd.DataFrame,
    lesions: pd.DataFrame,
    task: Task,
    fold: int,
    *,
    settings: dict | None = None,
    targets: pd.DataFrame | None = None,
    crowd_labels: pd.DataFrame | None = None,
    crowd_pool: pd.DataFrame | None = None,
    votes: pd.DataFrame | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, ExampleNotes]:
    """Examples of (task, fold), with the head columns of the task's kind.

    `settings` are the job's science settings (crowdskin.train.settings.job_settings); the kinds
    that read crowd labels take their label column from them. `crowd_pool` (image_id) is the pool:
    every image shown to the crowd (crowdskin.crowd.labels.candidate_pool); without it, the images
    with a crowd label are. `votes` (results/crowd/votes.parquet) is for the kinds that label the
    pool from the workers' votes.
    """
    kind = kind_of(task.kind)
    settings = settings or {}
    inputs = ExampleInputs(settings=settings, fold=fold, seed=seed, targets=targets, crowd_labels=crowd_labels,
                           votes=votes)
    notes = ExampleNotes()
    trains_on_crowd = CROWD_LABELS in kind.reads
    if trains_on_crowd and not settings.get("crowd_label"):
        raise ExamplesError(f"task {task.name} needs its crowd label column (train.crowdsim.label)")
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
        pool_ids = set(crowd_labels["image_id"].astype(str))
        if trains_on_crowd:
            crowd = kind.crowd_labels(crowd_labels, inputs)
    if crowd_pool is not None:
        pool_ids = set(crowd_pool["image_id"].astype(str))
    in_pool = table["image_id"].isin(pool_ids)
    notes.counts["crowd_pool_in_fold"] = int(in_pool.sum())

    expert_part = table[~in_pool | (table["split"] == "test")]
    pool_train = table[in_pool & (table["split"] == "train")].merge(crowd, on="image_id", how="left")
    unlabelled = pool_train["crowd_label"].isna()
    pool_train = pool_train[~unlabelled].assign(label=lambda d: d["crowd_label"].astype(float), label_source="crowd")
    pool_train = pool_train.drop(columns="crowd_label")

    chosen = kind.choose(expert_part, pool_train)
    if trains_on_crowd:
        notes.counts["crowd_train_without_crowd_label"] = int(unlabelled.sum())
        notes.counts["crowd_train"] = len(pool_train)
        if unlabelled.any():
            notes.warnings.append(
                f"{int(unlabelled.sum())} crowd-pool training images have no {settings['crowd_label']} "
                "and were left out"
            )
        if pool_train.empty:
            notes.warnings.append("no crowd-labelled training images in this fold")
    if kind.starts_from is None:  # a fine-tuning job has no expert training set to leave the pool out of
        notes.counts["crowd_pool_left_out_of_train_val"] = int((in_pool & (table["split"] != "test")).sum())

    chosen = chosen.drop(columns="abnormal").reset_index(drop=True)
    heads = kind.head_targets(task, chosen, inputs, notes)
    if list(heads) != list(kind.heads(task)):
        raise ExamplesError(f"kind {kind.name} gave targets for {list(heads)}, not its heads {list(kind.heads(task))}")
    columns = list(EXAMPLE_COLUMNS)
    for head, (values, available) in heads.items():
        target_column, available_column = head_columns(head)
        chosen[target_column] = np.asarray(values, dtype=float)
        chosen[available_column] = np.asarray(available, dtype=bool)
        columns += [target_column, available_column]
    for split in ("train", "val", "test"):
        notes.counts[f"n_{split}"] = int((chosen["split"] == split).sum())
        # A fine-tuning job without training images keeps the model it starts from.
        if notes.counts[f"n_{split}"] == 0 and not (split == "train" and kind.starts_from is not None):
            raise ExamplesError(f"task {task.name}, fold {fold}: no {split} examples")
    return chosen[columns], notes


def job_annotator_answers(
    examples: pd.DataFrame,
    task: Task,
    fold: int,
    notes: ExampleNotes,
    *,
    settings: dict | None = None,
    votes: pd.DataFrame | None = None,
    annotations: pd.DataFrame | None = None,
    seed: int = 0,
) -> AnnotatorAnswers | None:
    """The answers the task's annotator head learns on `examples`' lesions (None: the kind has no
    annotator head). The answers are a long table, joined to the examples by image_id when batches
    are made, so the examples table keeps its shape whatever the number of annotators."""
    kind = kind_of(task.kind)
    if kind.annotator_model is None:
        return None
    inputs = ExampleInputs(settings=settings or {}, fold=fold, seed=seed, votes=votes, annotations=annotations)
    answers = kind.annotator_answers(task, examples, inputs, notes)
    if answers is None or answers.model != kind.annotator_model:
        raise ExamplesError(f"kind {kind.name} has an {kind.annotator_model} annotator head but gave "
                            f"{'no answers' if answers is None else answers.model + ' answers'}")
    return answers


def trained_labels(examples: pd.DataFrame, task: Task) -> np.ndarray:
    """The labels the diagnosis output learns: NaN where the row's label source is not one the kind
    learns the label from (a kind that learns the crowd through an annotator head)."""
    labels = examples["label"].to_numpy(dtype=float)
    learned = examples["label_source"].isin(kind_of(task.kind).label_sources).to_numpy()
    return np.where(learned, labels, np.nan)


def head_arrays(examples: pd.DataFrame, heads: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per head, its (target, availability) arrays from an examples table."""
    return {head: (examples[head_columns(head)[0]].to_numpy(), examples[head_columns(head)[1]].to_numpy())
            for head in heads}


def hard_labels(labels: np.ndarray) -> np.ndarray:
    """0/1 from labels that may be soft (a crowd's probability): abnormal from 0.5 on."""
    return (np.asarray(labels, dtype=float) >= 0.5).astype(int)


def balanced_class_weights(labels: np.ndarray) -> dict[int, float]:
    """n / (2 n_c), as sklearn's `balanced`, on the hard labels the label's loss learns (NaN: none);
    a class absent from training gets weight 1."""
    labels = np.asarray(labels, dtype=float)
    labels = hard_labels(labels[~np.isnan(labels)])
    n = len(labels)
    counts = np.bincount(labels, minlength=2)
    return {c: (n / (2.0 * counts[c]) if counts[c] else 1.0) for c in (0, 1)}

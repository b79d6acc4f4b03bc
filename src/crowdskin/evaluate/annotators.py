"""What the models that learn each annotator learned of them, over the folds (results/scores/annotators.csv).

Each job of such a model writes annotators.parquet (crowdskin.train.loop.learned_annotators): a
crowd layer's confusion matrix per MTurk worker, or an annotator head's scale and bias per
student. Here they are averaged over the folds, beside the estimate the crowd stage makes without
the image (Dawid–Skene's reliability of the worker on the same votes; the student's agreement with
the others), so that a reader sees whom the network trusts and whether the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

ANNOTATOR_SUMMARY_COLUMNS = ["model", "backbone", "annotator_model", "annotator", "n_folds", "n_answers", "weight",
                             "reliability", "reliability_sd", "dawid_skene_reliability", "confusion_01",
                             "confusion_10", "scale", "bias", "bias_raw", "bias_raw_sd", "agreement"]


def summarise_annotators(parts: Sequence[pd.DataFrame], index: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """One row per (model, backbone, annotator): the folds that learned them, their training answers
    summed over the folds, and the mean (and sd over folds) of what was learned. `parts` are the
    jobs' annotators.parquet tables, `index` each job's model, backbone and fold. A column that no
    job of a model has (a crowd layer has no bias) is empty. Columns: ANNOTATOR_SUMMARY_COLUMNS."""
    if len(parts) != len(index):
        raise ValueError(f"{len(parts)} annotator tables for {len(index)} jobs")
    frames = [part.assign(model=entry["model"], backbone=entry["backbone"], fold=entry["fold"])
              for part, entry in zip(parts, index, strict=True)]
    if not frames:
        return pd.DataFrame(columns=ANNOTATOR_SUMMARY_COLUMNS)
    learned = pd.concat(frames, ignore_index=True)
    for column in ANNOTATOR_SUMMARY_COLUMNS:
        if column not in learned and not column.endswith("_sd") and column != "n_folds":
            learned[column] = float("nan")
    keys = ["model", "backbone", "annotator_model", "annotator"]
    grouped = learned.groupby(keys, sort=False)
    summary = grouped.agg(
        n_folds=("fold", "nunique"), n_answers=("n_answers", "sum"), weight=("weight", "mean"),
        reliability=("reliability", "mean"), reliability_sd=("reliability", "std"),
        dawid_skene_reliability=("dawid_skene_reliability", "first"), confusion_01=("confusion_01", "mean"),
        confusion_10=("confusion_10", "mean"), scale=("scale", "mean"), bias=("bias", "mean"),
        bias_raw=("bias_raw", "mean"), bias_raw_sd=("bias_raw", "std"), agreement=("agreement", "first"),
    ).reset_index()
    return summary[ANNOTATOR_SUMMARY_COLUMNS]

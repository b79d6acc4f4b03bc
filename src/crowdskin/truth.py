"""What the workflow recovered, compared with the synthetic default's known truth.

The embedded synthetic dataset (`crowdskin.synthetic`) draws every lesion from known properties and
writes them to ``truth/images.csv`` (true asymmetry class 0/1/2, number of border lobes, number and
names of colours, diagnosis) and ``truth/workers.csv`` (which simulated MTurk workers are spammers).
Only on these data can the stages be checked against the answer rather than against each other:

- `automated_vs_truth`: do the automated ABC algorithms measure what was drawn? Per feature, the
  share of lesions whose score equals the truth (meaningful for the asymmetry class, the colour
  count and each colour's presence flag, whose scales match the truth's) and the Spearman rank
  correlation (the only meaningful figure for the border score, which counts abrupt border segments
  on a 0..8 scale rather than lobes, so it can only *rank* lesions as the lobe count does).
- `annotations_vs_truth`: are the simulated raters' raw scores on the truth's scale, as simulated
  (truth + per-rater bias + noise)? Per source and feature: exact agreement, mean absolute error
  and Spearman correlation of every single score.
- `consensus_vs_truth`: does the training target keep the signal? The ENHANCE target is a mean of
  per-annotator z-scores, so only its *order* can be compared with the truth: Spearman correlation
  per source and feature.
- `funnel_vs_spammers`: do the CROWDSIM rules remove the simulated spammers' answers and spare the
  careful workers'? Precision and recall at the assignment level, per rule alone and for the funnel.

Each function takes the workflow's tables as written (tables.py) and the truth as read from its
CSV, validates the columns it reads (ValueError naming the missing one) and returns one row per
check. Missing recovered values are left out of a row's statistics and counted, never imputed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from crowdskin.tables import AUTOMATED_COLORS

# The truth's column for each ABC feature; the crowd, student and automated feature names match.
FEATURES = ("asymmetry", "border", "color")
# The automated table's score column for each feature, and what of the truth it should recover.
AUTOMATED_SCORES = {"asymmetry": "asymmetry_class", "border": "border_score", "color": "color_score"}
TRUTH_IMAGE_COLUMNS = ("image_id", *FEATURES, "colors")
TRUTH_WORKER_COLUMNS = ("worker_id", "is_spammer")

AGREEMENT_COLUMNS = ["feature", "n_truth", "n", "exact_agreement", "spearman"]
ANNOTATION_COLUMNS = ["source", "feature", "n_truth", "n", "exact_agreement", "mean_abs_error", "spearman"]
CONSENSUS_COLUMNS = ["source", "feature", "n_truth", "n", "spearman"]
SPAMMER_COLUMNS = ["rule", "n", "spam", "true_positives", "false_positives", "false_negatives",
                   "precision", "recall"]


def require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    """Raise ValueError naming the first of `columns` that `frame` (called `name`) lacks."""
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"{name}: missing column {column!r} (has {list(frame.columns)})")


def spearman(x: Sequence[float] | pd.Series, y: Sequence[float] | pd.Series) -> float:
    """Spearman's rho, NaN when it is undefined (fewer than 2 pairs or a constant side).

    Checked here rather than left to scipy, which returns NaN for these too but warns, and a warning
    in a report script is noise: an undefined correlation is an expected outcome on a tiny subset.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _truth_images(truth_images: pd.DataFrame) -> pd.DataFrame:
    require_columns(truth_images, TRUTH_IMAGE_COLUMNS, "truth_images")
    truth = truth_images.assign(image_id=truth_images["image_id"].astype(str))
    duplicated = truth["image_id"].duplicated()
    if duplicated.any():
        # A duplicated id would silently double-count its lesion in every join below.
        raise ValueError(f"truth_images: duplicated image_id {truth.loc[duplicated, 'image_id'].iloc[0]!r}")
    return truth.set_index("image_id")


def _agreement(recovered: pd.Series, true: pd.Series) -> dict[str, float | int]:
    """Statistics of `recovered` against `true` (same index) over the pairs where both are known."""
    pairs = pd.DataFrame({"recovered": pd.to_numeric(recovered, errors="coerce").astype(float),
                          "true": pd.to_numeric(true, errors="coerce").astype(float)}).dropna()
    n = len(pairs)
    return {
        "n_truth": int(true.notna().sum()),
        "n": n,
        "exact_agreement": float((pairs["recovered"] == pairs["true"]).mean()) if n else float("nan"),
        "mean_abs_error": float((pairs["recovered"] - pairs["true"]).abs().mean()) if n else float("nan"),
        "spearman": spearman(pairs["recovered"], pairs["true"]),
    }


def true_color_flags(truth_images: pd.DataFrame) -> pd.DataFrame:
    """One boolean column per reference colour (index image_id): was it painted on the lesion?"""
    truth = _truth_images(truth_images)
    painted = truth["colors"].fillna("").astype(str).str.split("|")
    return pd.DataFrame({name: painted.map(lambda names, n=name: n in names) for name in AUTOMATED_COLORS},
                        index=truth.index)


def automated_vs_truth(automated: pd.DataFrame, truth_images: pd.DataFrame) -> pd.DataFrame:
    """Per feature of the automated table: agreement and rank correlation with the drawn truth.

    Rows: ``asymmetry`` (class vs true class), ``border`` (score vs true lobe count), ``color``
    (colour count vs number of painted colours), then ``color_<name>`` for each reference colour
    (detected flag vs painted). Columns: feature, n_truth (lesions in both tables), n (of those with a
    score), exact_agreement, spearman. Lesions absent from the truth (another dataset) are ignored.
    """
    require_columns(automated, ["image_id", *AUTOMATED_SCORES.values(),
                                *(f"color_{name}" for name in AUTOMATED_COLORS)], "automated")
    truth = _truth_images(truth_images)
    recovered = automated.assign(image_id=automated["image_id"].astype(str)).set_index("image_id")
    common = recovered.index.intersection(truth.index)
    recovered, truth = recovered.loc[common], truth.loc[common]
    flags = true_color_flags(truth.reset_index())
    rows = []
    for feature, column in AUTOMATED_SCORES.items():
        stats = _agreement(recovered[column], truth[feature])
        rows.append({"feature": feature, **stats, "n_truth": len(common)})
    for name in AUTOMATED_COLORS:
        # boolean -> float keeps NA as NaN, so an unscored lesion drops out instead of counting as absent
        detected = recovered[f"color_{name}"].astype("Float64").astype(float)
        stats = _agreement(detected, flags[name].astype(float))
        rows.append({"feature": f"color_{name}", **stats, "n_truth": len(common)})
    return pd.DataFrame(rows)[AGREEMENT_COLUMNS]


def annotations_vs_truth(annotations: pd.DataFrame, truth_images: pd.DataFrame) -> pd.DataFrame:
    """Per source x feature of the long annotations table: every single score against the truth.

    The automated source's border score is on another scale (see the module docstring), so its
    exact agreement and error say little; its Spearman still does. Features the truth lacks are
    skipped. Columns: source, feature, n_truth (lesions of the truth the source scored), n (scores),
    exact_agreement, mean_abs_error, spearman.
    """
    require_columns(annotations, ["image_id", "source", "feature", "value"], "annotations")
    truth = _truth_images(truth_images)
    scores = annotations[annotations["feature"].isin(FEATURES)].assign(image_id=annotations["image_id"].astype(str))
    scores = scores[scores["image_id"].isin(truth.index)]
    rows = []
    for (source, feature), group in scores.groupby(["source", "feature"], sort=True):
        true = truth.loc[group["image_id"], feature].set_axis(group.index)
        stats = _agreement(group["value"], true)
        rows.append({"source": source, "feature": feature, **stats, "n_truth": int(group["image_id"].nunique())})
    return pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)


def consensus_vs_truth(targets: pd.DataFrame, truth_images: pd.DataFrame) -> pd.DataFrame:
    """Per source x feature of the consensus targets: Spearman correlation with the true value.

    Only available targets count (an unannotated lesion has no target). Columns: source, feature,
    n_truth (lesions of the truth with a target row), n (available), spearman.
    """
    require_columns(targets, ["image_id", "source", "feature", "target", "available"], "targets")
    truth = _truth_images(truth_images)
    rows_of_truth = targets[targets["feature"].isin(FEATURES)].assign(image_id=targets["image_id"].astype(str))
    rows_of_truth = rows_of_truth[rows_of_truth["image_id"].isin(truth.index)]
    rows = []
    for (source, feature), group in rows_of_truth.groupby(["source", "feature"], sort=True):
        available = group[group["available"].astype(bool)]
        true = truth.loc[available["image_id"], feature].set_axis(available.index)
        stats = _agreement(available["target"], true)
        rows.append({"source": source, "feature": feature, "n_truth": len(group), "n": stats["n"],
                     "spearman": stats["spearman"]})
    return pd.DataFrame(rows, columns=CONSENSUS_COLUMNS)


def _precision_recall(rule: str, rejected: pd.Series, spam: pd.Series) -> dict[str, object]:
    tp = int((rejected & spam).sum())
    fp = int((rejected & ~spam).sum())
    fn = int((~rejected & spam).sum())
    return {"rule": rule, "n": len(spam), "spam": int(spam.sum()), "true_positives": tp, "false_positives": fp,
            "false_negatives": fn, "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan")}


def _is_true(values: pd.Series) -> pd.Series:
    # workers.csv round-trips booleans as the strings "True"/"False"; a bool column passes as is.
    return values.astype(str).str.strip().str.lower().isin(["1", "1.0", "true", "yes"])


def funnel_vs_spammers(decisions: pd.DataFrame, truth_workers: pd.DataFrame) -> pd.DataFrame:
    """Precision and recall of the MTurk filters at removing the simulated spammers' assignments.

    Positive = an assignment by a spammer; predicted = rejected. One row per ``flag_<rule>`` column
    of `decisions` (that rule alone, whatever rule the funnel charged the assignment to; usable
    assignments only, as quarantined ones were never shown to the rules), then ``all rules``: the
    funnel's verdict (any ``rejected_by``, ingest quarantine included) on every assignment. Rows
    without a worker id cannot be judged and are left out; a worker id missing from the truth is an
    error, since its answers would otherwise be silently counted as careful.
    """
    require_columns(decisions, ["worker_id", "rejected_by"], "decisions")
    require_columns(truth_workers, TRUTH_WORKER_COLUMNS, "truth_workers")
    spammer = pd.Series(_is_true(truth_workers["is_spammer"]).to_numpy(),
                        index=truth_workers["worker_id"].astype(str))
    judged = decisions[decisions["worker_id"].notna()].copy()
    judged["worker_id"] = judged["worker_id"].astype(str)
    unknown = sorted(set(judged["worker_id"]) - set(spammer.index))
    if unknown:
        raise ValueError(f"truth_workers: {len(unknown)} worker(s) of the decisions missing, e.g. {unknown[:3]}")
    spam = judged["worker_id"].map(spammer).astype(bool)
    usable = judged["usable"].astype(bool) if "usable" in judged else pd.Series(True, index=judged.index)
    rows = [
        _precision_recall(column.removeprefix("flag_"), judged.loc[usable, column].astype(bool), spam[usable])
        for column in judged.columns if column.startswith("flag_")
    ]
    rows.append(_precision_recall("all rules", judged["rejected_by"].notna(), spam))
    return pd.DataFrame(rows, columns=SPAMMER_COLUMNS)

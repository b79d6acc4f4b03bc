"""Relevance mass pooled over folds, compared between each model and its backbone's baseline, and
(with the synthetic shortcut trap) AUC on clean and trap images: pure functions on the explanation
jobs' tables (`crowdskin.explain.job`).

The comparisons are the AUC comparisons' machinery (`crowdskin.evaluate.stats`) on a mean:
paired per lesion, a bootstrap percentile CI, a normal-approximation p-value (the mean of a
paired difference over hundreds of lesions), Holm over every comparison of the table, and
Bonferroni intervals: one that clears 0 always has a Holm p below 1 - confidence (Holm is never
more conservative than Bonferroni; the converse need not hold).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crowdskin.evaluate import stats

REFERENCE = "baseline"
PAIR_KEYS = ["fold", "image_id"]  # a lesion tested twice (repeated hold-out) is two pairs
RELEVANCE_SUMMARY_COLUMNS = ["model", "backbone", "lesions", "relevance_lesion", "ci_low", "ci_high",
                             "fold_mean", "fold_sd", "lesion_area"]
COMPARISON_COLUMNS = ["model", "reference", "backbone", "measure", "pairs", "model_value", "reference_value",
                      "difference", "ci_low", "ci_high", "p_value", "holm_p", "adjusted_ci_low",
                      "adjusted_ci_high"]
SHORTCUT_COLUMNS = ["model", "backbone", "lesions", "auc_tested", "auc_clean", "auc_clean_ci_low",
                    "auc_clean_ci_high", "auc_trap", "auc_trap_ci_low", "auc_trap_ci_high", "auc_drop",
                    "auc_drop_ci_low", "auc_drop_ci_high", "auc_drop_p", "relevance_marker_trap",
                    "relevance_marker_clean", "relevance_lesion_clean", "marker_area"]


@dataclass(frozen=True)
class Settings:
    """evaluate.bootstrap and the seed."""

    resamples: int
    confidence: float
    seed: int


def _bootstrap_mean(values: np.ndarray, settings: Settings, offset: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng([settings.seed, offset])
    take = rng.integers(0, len(values), size=(settings.resamples, len(values)))
    return stats.percentile_interval(values[take].mean(axis=1), settings.confidence)


def summarise_relevance(relevance: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Per (model, backbone): the mean share of relevance in the lesion over every tested lesion
    with a mask (pooled over folds) with its bootstrap CI, the folds' mean and sd, and the lesions'
    mean area share: what a map spread evenly over the image would score."""
    rows = []
    for i, ((model, backbone), group) in enumerate(relevance.groupby(["model", "backbone"], sort=False)):
        values = group["relevance_lesion"].dropna().to_numpy(np.float64)
        low, high = _bootstrap_mean(values, settings, i) if len(values) else (math.nan, math.nan)
        per_fold = group.groupby("fold")["relevance_lesion"].mean()
        rows.append({"model": model, "backbone": backbone, "lesions": len(values),
                     "relevance_lesion": values.mean() if len(values) else math.nan, "ci_low": low, "ci_high": high,
                     "fold_mean": per_fold.mean(), "fold_sd": per_fold.std(ddof=1) if len(per_fold) > 1 else math.nan,
                     "lesion_area": group.loc[group["relevance_lesion"].notna(), "lesion_area"].mean()})
    return pd.DataFrame(rows, columns=RELEVANCE_SUMMARY_COLUMNS)


def compare_to_baseline(relevance: pd.DataFrame, settings: Settings,
                        measures: Sequence[str] = ("relevance_lesion",)) -> pd.DataFrame:
    """Each model against the baseline of its backbone on each measure, paired on the lesions both
    have a value for; Holm and the adjusted intervals over every row of the table."""
    rows, variances = [], []
    for backbone, model, group, reference in _against_baseline(relevance):
        for measure in measures:
            paired = group[[*PAIR_KEYS, measure]].merge(reference[[*PAIR_KEYS, measure]], on=PAIR_KEYS,
                                                        suffixes=("", "_reference")).dropna()
            if len(paired) < 2:
                continue
            difference = (paired[measure] - paired[f"{measure}_reference"]).to_numpy(np.float64)
            variance = float(difference.var(ddof=1) / len(difference))
            mean = float(difference.mean())
            if variance > 0:
                p = math.erfc(abs(mean / math.sqrt(variance)) / math.sqrt(2.0))
            else:
                p = 1.0 if mean == 0 else math.nan
            low, high = _bootstrap_mean(difference, settings, len(rows) + 1000)
            rows.append({"model": model, "reference": REFERENCE, "backbone": backbone, "measure": measure,
                         "pairs": len(paired), "model_value": float(paired[measure].mean()),
                         "reference_value": float(paired[f"{measure}_reference"].mean()),
                         "difference": mean, "ci_low": low, "ci_high": high, "p_value": p})
            variances.append(variance)
    return _adjusted(rows, variances, settings.confidence)


Members = Mapping[str, Mapping[str, Sequence[Sequence[str]]]]


def ensemble_scores(relevance: pd.DataFrame, ensembles: Members) -> pd.DataFrame:
    """The shortcut scores of each ensemble: its members' scores on the tested, clean and trap
    images averaged per lesion, as the evaluation stage averages their probabilities. `ensembles`:
    name -> backbone it is reported under -> member (task, backbone) pairs; an ensemble with a
    member that has no explanation is left out."""
    columns = ["score", "score_clean", "score_trap"]
    keyed = relevance.set_index(["model", "backbone"])
    tables = []
    for name, by_backbone in ensembles.items():
        for backbone, members in by_backbone.items():
            if not all(tuple(member) in keyed.index for member in members):
                continue
            parts = [keyed.loc[tuple(member)].reset_index(drop=True)[[*PAIR_KEYS, "label", *columns]]
                     for member in members]
            joined = pd.concat(parts).groupby(PAIR_KEYS, as_index=False).agg(
                {"label": "first", **{column: "mean" for column in columns}})
            tables.append(joined.assign(model=name, backbone=backbone))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def shortcut_scores(scored: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Per (model, backbone) of the shortcut trap: AUC on the images as tested (the marker agreeing
    with the diagnosis as in training), on the clean images and on the trap images, with DeLong
    CIs; the drop clean - trap with its paired DeLong CI and p; and the share of relevance on the
    marker (trap images that show it; clean images, where the same region shows skin) and in the
    lesion (clean images). Ensembles have scores, not maps: their relevance columns are NaN."""
    z = _normal_quantile(settings.confidence)
    rows = []
    for (model, backbone), group in scored.groupby(["model", "backbone"], sort=False):
        labels = group["label"].to_numpy(np.float64)
        clean, trap = group["score_clean"].to_numpy(np.float64), group["score_trap"].to_numpy(np.float64)
        aucs, covariance = stats.delong_covariance(labels, np.column_stack([clean, trap]))
        drop = stats.delong(labels, clean, trap)
        shown = group[group["marker_trap"].astype(bool)] if "marker_trap" in group else group.iloc[:0]

        def mean(frame: pd.DataFrame, column: str) -> float:
            return float(frame[column].mean()) if column in frame and len(frame) else math.nan

        rows.append({
            "model": model, "backbone": backbone, "lesions": len(group),
            "auc_tested": stats.auc(labels, group["score"].to_numpy(np.float64)),
            **_interval("auc_clean", aucs[0], covariance[0, 0], z),
            **_interval("auc_trap", aucs[1], covariance[1, 1], z),
            **_interval("auc_drop", drop.difference, drop.variance, z), "auc_drop_p": drop.p,
            "relevance_marker_trap": mean(shown, "relevance_marker_trap"),
            "relevance_marker_clean": mean(group, "relevance_marker_clean"),
            "relevance_lesion_clean": mean(group, "relevance_lesion_clean"),
            "marker_area": mean(group, "marker_area"),
        })
    return pd.DataFrame(rows, columns=SHORTCUT_COLUMNS)


def compare_drops(scored: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Whether each model falls for the marker less than its backbone's baseline: the difference of
    their AUC drops (model's clean - trap minus the baseline's), on the same lesions, with the
    DeLong covariance of the four AUCs; Holm and adjusted intervals over the table."""
    z = _normal_quantile(settings.confidence)
    rows, variances = [], []
    contrast = np.array([1.0, -1.0, -1.0, 1.0])
    for backbone, model, group, reference in _against_baseline(scored):
        paired = group.merge(reference, on=PAIR_KEYS, suffixes=("", "_reference"))
        labels = paired["label"].to_numpy(np.float64)
        matrix = paired[["score_clean", "score_trap", "score_clean_reference", "score_trap_reference"]]
        aucs, covariance = stats.delong_covariance(labels, matrix.to_numpy(np.float64))
        difference = float(contrast @ aucs)
        variance = max(float(contrast @ covariance @ contrast), 0.0)
        p = math.erfc(abs(difference) / math.sqrt(2.0 * variance)) if variance > 0 else math.nan
        half = z * math.sqrt(variance)
        rows.append({"model": model, "reference": REFERENCE, "backbone": backbone, "measure": "auc_drop",
                     "pairs": len(paired), "model_value": float(aucs[0] - aucs[1]),
                     "reference_value": float(aucs[2] - aucs[3]), "difference": difference,
                     "ci_low": difference - half, "ci_high": difference + half, "p_value": p})
        variances.append(variance)
    return _adjusted(rows, variances, settings.confidence)


def _against_baseline(frame: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame, pd.DataFrame]]:
    """(backbone, model, the model's rows, the baseline's rows) for every model of a backbone that
    has a baseline, the baseline itself left out."""
    for backbone, of_backbone in frame.groupby("backbone", sort=False):
        reference = of_backbone[of_backbone["model"] == REFERENCE]
        if reference.empty:
            continue
        for model, group in of_backbone.groupby("model", sort=False):
            if model != REFERENCE:
                yield str(backbone), str(model), group, reference


def _adjusted(rows: list[dict[str, object]], variances: list[float], confidence: float) -> pd.DataFrame:
    """The comparisons as a table, with Holm over every row and the Bonferroni intervals."""
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    if table.empty:
        return table
    table["holm_p"] = stats.holm(table["p_value"].fillna(1.0).to_numpy())
    low, high = stats.simultaneous_intervals(table["difference"].to_numpy(), np.asarray(variances), confidence)
    table["adjusted_ci_low"], table["adjusted_ci_high"] = low, high
    return table


def _normal_quantile(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf((1.0 + confidence) / 2.0))


def _interval(name: str, value: float, variance: float, z: float) -> dict[str, float]:
    half = z * math.sqrt(max(variance, 0.0))
    return {name: float(value), f"{name}_ci_low": float(value) - half, f"{name}_ci_high": float(value) + half}

"""Operating characteristics of every model and ensemble: calibration (reliability points and the
Brier score with a stratified bootstrap CI), an operating point chosen on validation data, per-fold
ROC curves, and what the annotation heads learned.

Input is one long table of predictions (`PREDICTION_COLUMNS`): the identity of the model (model,
kind, source, backbone), fold, split, image_id, score, label, with the `val` rows of each training
job beside its `test` rows. Like crowdskin.evaluate.scores, with `split.scheme: kfold` a model's
folds pool into one out-of-fold prediction per lesion; with `repeated_holdout` the test sets overlap
and only per-fold figures are reported (scope `fold<k>`).

The operating point. Each fold's threshold maximises Youden's J (sensitivity + specificity - 1) on
that fold's validation predictions only and is then applied, unchanged, to the same fold's test
predictions; the test rows never take part in the choice. Every threshold between the lowest
validation score called abnormal and the highest one called normal gives the same J, so the
threshold is the midpoint of the two (a test score between them is not decided by which validation
lesion happened to sit nearest). An ensemble has test rows only: its validation scores are the
equal-weight average of its members' validation scores on the fold's validation lesions, the same
average that makes its test scores (`ensemble_validation`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crowdskin.evaluate import scores, stats

IDENTITY = scores.IDENTITY
PREDICTION_COLUMNS = [*IDENTITY, "fold", "split", "image_id", "score", "label"]
# Ten equal-width bins: each holds enough of the default run's 500 pooled lesions to estimate a
# fraction, and the bin edges are the same for every model, so their points compare.
RELIABILITY_BINS = 10
# The decision threshold of a probability, used only where a fold's validation set has one class
# (Youden's J needs both).
FALLBACK_THRESHOLD = 0.5
POOLED = "pooled"

CALIBRATION_COLUMNS = [*IDENTITY, "scope", "bin", "bin_low", "bin_high", "count", "n_abnormal", "mean_predicted",
                       "observed"]
BRIER_COLUMNS = [*IDENTITY, "scope", "n", "n_abnormal", "brier", "ci_low", "ci_high", "brier_prevalence", "note"]
OPERATING_COLUMNS = [*IDENTITY, "scope", "threshold", "n_val", "n_val_abnormal", "val_youden", "n_test",
                     "tp", "fn", "fp", "tn", "sensitivity", "sensitivity_low", "sensitivity_high", "specificity",
                     "specificity_low", "specificity_high", "note"]
FOLD_ROC_COLUMNS = [*IDENTITY, "fold", "fpr", "tpr", "threshold"]
HEAD_POINT_COLUMNS = ["model", "kind", "source", "backbone", "fold", "head", "image_id", "prediction", "target"]


# The scores' settings: the same split scheme, bootstrap and seed (its extra comparisons unused here).
Settings = scores.Settings


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}")


def _one_class(labels: np.ndarray) -> bool:
    positives = int(labels.sum())
    return positives == 0 or positives == len(labels)


def _scopes(test: pd.DataFrame, scheme: str) -> list[tuple[tuple[Any, ...], str, pd.DataFrame]]:
    """(identity, scope, rows): the pooled out-of-fold predictions per model and backbone with k-fold
    splits, otherwise each fold on its own."""
    out = []
    for key, part in test.groupby(IDENTITY, sort=False):
        if scheme == "kfold" and not part["image_id"].duplicated().any():
            out.append((key, POOLED, part))
        else:
            out += [(key, f"fold{int(fold)}", rows) for fold, rows in part.groupby("fold", sort=True)]
    return out


def _test_rows(predictions: pd.DataFrame) -> pd.DataFrame:
    _require(predictions, PREDICTION_COLUMNS, "predictions")
    return predictions[predictions["split"] == "test"]


# ----------------------------------------------------------------------------------------------------
# Calibration


def reliability_points(labels: np.ndarray, scores: np.ndarray, bins: int = RELIABILITY_BINS) -> pd.DataFrame:
    """The reliability diagram's points: per non-empty uniform bin of the predicted probability, the
    mean prediction, the observed fraction of abnormal lesions and the count."""
    from sklearn.calibration import calibration_curve

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    observed, predicted = calibration_curve(labels, scores, n_bins=bins, strategy="uniform")
    # calibration_curve gives no counts; the same edges and the same side of each edge as sklearn's.
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], scores)
    counts = np.bincount(ids, minlength=bins)
    abnormal = np.bincount(ids, weights=labels, minlength=bins)
    used = np.flatnonzero(counts)
    if len(used) != len(observed):
        raise AssertionError("the bin counts do not match sklearn's calibration_curve")
    return pd.DataFrame({"bin": used, "bin_low": edges[used], "bin_high": edges[used + 1], "count": counts[used],
                         "n_abnormal": abnormal[used].astype(int), "mean_predicted": predicted,
                         "observed": observed})


def calibration_table(predictions: pd.DataFrame, scheme: str, bins: int = RELIABILITY_BINS) -> pd.DataFrame:
    """CALIBRATION_COLUMNS: reliability points per model, backbone and scope, on the test rows."""
    frames = []
    for key, scope, part in _scopes(_test_rows(predictions), scheme):
        points = reliability_points(part["label"].to_numpy(), part["score"].to_numpy(np.float64), bins)
        frames.append(points.assign(**dict(zip(IDENTITY, key, strict=True)), scope=scope))
    if not frames:
        return pd.DataFrame(columns=CALIBRATION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CALIBRATION_COLUMNS]


def bootstrap_brier_samples(labels: np.ndarray, scores: np.ndarray, *, n_resamples: int,
                            seed: int | np.random.Generator) -> np.ndarray:
    """Brier score in each of n_resamples stratified bootstrap resamples: the abnormal and the normal
    lesions are resampled apart, so every resample keeps the prevalence (as the AUC's bootstrap does)."""
    labels = np.asarray(labels).astype(int)
    losses = (np.asarray(scores, dtype=np.float64) - labels) ** 2
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    for cls in (1, 0):
        part = losses[labels == cls]
        if len(part):
            total += part[rng.integers(0, len(part), size=(n_resamples, len(part)))].sum(axis=1)
    return total / len(labels)


def brier_table(predictions: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """BRIER_COLUMNS: per model, backbone and scope the Brier score of the test predictions, its
    stratified bootstrap CI, and the Brier score of always predicting the prevalence (for scale)."""
    from sklearn.metrics import brier_score_loss

    rows = []
    for key, scope, part in _scopes(_test_rows(predictions), settings.scheme):
        labels = part["label"].to_numpy().astype(int)
        scores = part["score"].to_numpy(np.float64)
        prevalence = float(labels.mean())
        row = dict(zip(IDENTITY, key, strict=True)) | {
            "scope": scope, "n": len(labels), "n_abnormal": int(labels.sum()),
            "brier": float(brier_score_loss(labels, scores, pos_label=1)), "ci_low": math.nan, "ci_high": math.nan,
            "brier_prevalence": prevalence * (1 - prevalence), "note": ""}
        samples = bootstrap_brier_samples(labels, scores, n_resamples=settings.resamples, seed=settings.seed)
        row["ci_low"], row["ci_high"] = stats.percentile_interval(samples, settings.confidence)
        if _one_class(labels):
            row["note"] = "test set has one class only"
        rows.append(row)
    return pd.DataFrame(rows, columns=BRIER_COLUMNS)


# ----------------------------------------------------------------------------------------------------
# Operating point


@dataclass(frozen=True)
class Threshold:
    value: float
    youden: float  # J on the validation predictions; NaN with the fallback
    note: str = ""


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> Threshold:
    """The threshold (abnormal when score >= threshold) that maximises Youden's J on these predictions,
    placed midway between the lowest score it calls abnormal and the highest it calls normal; the
    highest threshold among equal J. FALLBACK_THRESHOLD with a note when one class is missing."""
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    if len(labels) == 0 or _one_class(labels):
        what = "no validation lesions" if len(labels) == 0 else f"one class only in {len(labels)} validation lesions"
        return Threshold(FALLBACK_THRESHOLD, math.nan, f"{what}: threshold {FALLBACK_THRESHOLD}")
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    # The first point (threshold +inf) calls nothing abnormal: no operating point.
    j = tpr[1:] - fpr[1:]
    best = int(np.argmax(j))  # thresholds decrease, so the first maximum is the highest threshold
    cut = float(thresholds[1:][best])
    below = scores[scores < cut]
    value = (cut + float(below.max())) / 2 if len(below) else cut
    return Threshold(value, float(j[best]))


def ensemble_validation(predictions: pd.DataFrame, ensembles: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Validation rows for the ensembles, which have test rows only: per fold, the equal-weight average
    of the members' validation scores on the lesions every member validated on.

    `ensembles`: {"model", "backbone", "members": [(task, backbone), ...]} per ensemble and backbone;
    the ensemble's kind and source come from its test rows in `predictions`.
    """
    _require(predictions, PREDICTION_COLUMNS, "predictions")
    val = predictions[predictions["split"] == "val"]
    identities = predictions.drop_duplicates(["model", "backbone"]).set_index(["model", "backbone"])
    frames = []
    for entry in ensembles:
        model, backbone = entry["model"], entry["backbone"]
        if (model, backbone) not in identities.index:
            continue
        members = [val[(val["model"] == task) & (val["backbone"] == b)] for task, b in entry["members"]]
        if not members or any(m.empty for m in members):
            continue
        joined = pd.concat(members).groupby(["fold", "image_id"], sort=True).agg(
            score=("score", "mean"), label=("label", "first"), labels=("label", "nunique"), n=("score", "size"))
        if (joined["labels"] > 1).any():
            raise ValueError(f"{model}/{backbone}: members disagree on a validation lesion's label")
        joined = joined[joined["n"] == len(members)].reset_index()
        identity = identities.loc[(model, backbone)]
        frames.append(pd.DataFrame({"model": model, "kind": identity["kind"], "source": identity["source"],
                                    "backbone": backbone, "fold": joined["fold"], "split": "val",
                                    "image_id": joined["image_id"], "score": joined["score"],
                                    "label": joined["label"]}))
    if not frames:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS]


def _wilson(successes: int, total: int, confidence: float) -> tuple[float, float]:
    if total == 0:
        return math.nan, math.nan
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _rates(tp: int, fn: int, fp: int, tn: int, confidence: float) -> dict[str, float]:
    sens_low, sens_high = _wilson(tp, tp + fn, confidence)
    spec_low, spec_high = _wilson(tn, tn + fp, confidence)
    return {"sensitivity": tp / (tp + fn) if tp + fn else math.nan, "sensitivity_low": sens_low,
            "sensitivity_high": sens_high, "specificity": tn / (tn + fp) if tn + fp else math.nan,
            "specificity_low": spec_low, "specificity_high": spec_high}


def operating_points(predictions: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """OPERATING_COLUMNS: per model, backbone and fold the threshold chosen on the fold's validation
    rows and the confusion matrix of the fold's test rows at it; with k-fold splits also a `pooled`
    row per model and backbone, the folds' confusion matrices summed (each lesion tested once).
    Sensitivity and specificity come with Wilson intervals at `settings.confidence`."""
    from sklearn.metrics import confusion_matrix

    _require(predictions, PREDICTION_COLUMNS, "predictions")
    rows = []
    for key, part in predictions.groupby(IDENTITY, sort=False):
        identity = dict(zip(IDENTITY, key, strict=True))
        folds = []
        for fold, rows_of_fold in part.groupby("fold", sort=True):
            val = rows_of_fold[rows_of_fold["split"] == "val"]
            test = rows_of_fold[rows_of_fold["split"] == "test"]
            if test.empty:
                continue
            threshold = youden_threshold(val["label"].to_numpy(), val["score"].to_numpy(np.float64))
            labels = test["label"].to_numpy().astype(int)
            called = (test["score"].to_numpy(np.float64) >= threshold.value).astype(int)
            tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, called, labels=[0, 1]).ravel())
            folds.append((tp, fn, fp, tn))
            rows.append(identity | {"scope": f"fold{int(fold)}", "threshold": threshold.value, "n_val": len(val),
                                    "n_val_abnormal": int(val["label"].sum()), "val_youden": threshold.youden,
                                    "n_test": len(test), "tp": tp, "fn": fn, "fp": fp, "tn": tn}
                        | _rates(tp, fn, fp, tn, settings.confidence) | {"note": threshold.note})
        if not folds:
            continue
        tested = part.loc[part["split"] == "test", "image_id"]
        if settings.scheme == "kfold" and not tested.duplicated().any():
            tp, fn, fp, tn = (sum(f[i] for f in folds) for i in range(4))
            rows.append(identity | {"scope": POOLED, "threshold": math.nan, "n_val": 0, "n_val_abnormal": 0,
                                    "val_youden": math.nan, "n_test": tp + fn + fp + tn, "tp": tp, "fn": fn,
                                    "fp": fp, "tn": tn} | _rates(tp, fn, fp, tn, settings.confidence)
                        | {"note": "each fold at its own threshold"})
    table = pd.DataFrame(rows, columns=OPERATING_COLUMNS)
    table["note"] = table["note"].fillna("")
    return table


# ----------------------------------------------------------------------------------------------------
# Per-fold ROC curves


def fold_roc(predictions: pd.DataFrame) -> pd.DataFrame:
    """FOLD_ROC_COLUMNS: the ROC curve of each fold's test predictions per model and backbone (a fold
    whose test set has one class has no curve). The first point's threshold is +inf."""
    from sklearn.metrics import roc_curve

    frames = []
    for key, part in _test_rows(predictions).groupby([*IDENTITY, "fold"], sort=False):
        labels = part["label"].to_numpy().astype(int)
        if _one_class(labels):
            continue
        fpr, tpr, thresholds = roc_curve(labels, part["score"].to_numpy(np.float64))
        frames.append(pd.DataFrame({**dict(zip([*IDENTITY, "fold"], key, strict=True)), "fpr": fpr, "tpr": tpr,
                                    "threshold": thresholds}))
    if not frames:
        return pd.DataFrame(columns=FOLD_ROC_COLUMNS)
    return pd.concat(frames, ignore_index=True)[FOLD_ROC_COLUMNS]


# ----------------------------------------------------------------------------------------------------
# What the heads learned


def model_auc(predictions: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """(model, backbone, auc, scope): the pooled out-of-fold test AUC with k-fold splits, else the mean
    of the folds' AUCs, as the heads' figure shows beside them."""
    rows = []
    for (model, _kind, _source, backbone), scope, part in _scopes(_test_rows(predictions), scheme):
        labels = part["label"].to_numpy().astype(int)
        value = math.nan if _one_class(labels) else stats.auc(labels, part["score"].to_numpy(np.float64))
        rows.append({"model": model, "backbone": backbone, "scope": scope, "auc": value})
    table = pd.DataFrame(rows, columns=["model", "backbone", "scope", "auc"])
    return (table.groupby(["model", "backbone"], sort=False)
            .agg(auc=("auc", "mean"), scope=("scope", lambda s: POOLED if (s == POOLED).all() else "mean of folds"))
            .reset_index())

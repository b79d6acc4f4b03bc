"""The studies' annotation analyses, as tables.

- `annotation_counts`: lesions with annotations per dataset × source × feature (ENHANCE Table 2).
- `label_correlation`: Pearson r between each consensus target and the abnormal label (Table 3),
  computed with `scipy.stats.pearsonr` on the lesions that have both, as the study did.
- `source_agreement`: Pearson r between sources per feature on shared lesions (Fig. 5).
- `disagreement_auc`: Cheplygina & Pluim (2018): predict abnormal from annotations alone.
- `spammer_detection`: on synthetic data, how well the MTurk rules reject simulated spammers.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import pearsonr
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crowdskin.crowd.consensus import ABC_FEATURES, select_annotations, standardise_per_annotator, wide_annotations

MOMENTS = ("mean", "std", "skewness", "kurtosis")


def _feature_order(features: Sequence[str]) -> list[str]:
    abc = [f for f in ABC_FEATURES if f in features]
    return abc + sorted(f for f in features if f not in ABC_FEATURES)


def annotation_counts(annotations: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per (dataset, source), one column per feature, cells = lesions with at
    least one annotation of that feature from that source (0 where none)."""
    counts = annotations.groupby(["dataset", "source", "feature"])["image_id"].nunique()
    wide = counts.unstack("feature", fill_value=0)
    wide = wide[_feature_order(list(wide.columns))]
    wide.columns.name = None
    return wide.reset_index().astype({c: "int64" for c in wide.columns})


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(r, p); NaN when fewer than 3 pairs or either side is constant (r is undefined)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    result = pearsonr(x, y)
    return float(result.statistic), float(result.pvalue)


def label_correlation(targets: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Long table: dataset, source, feature, r, p_value, n (lesions with a target and a label)."""
    labelled = images.dropna(subset=["abnormal"])[["image_id", "dataset", "abnormal"]]
    frame = targets[targets["available"]].merge(labelled, on=["image_id", "dataset"], how="inner")
    rows = []
    for (dataset, source, feature), group in frame.groupby(["dataset", "source", "feature"], sort=True):
        r, p = _pearson(group["target"].to_numpy(float), group["abnormal"].to_numpy(float))
        rows.append({"dataset": dataset, "source": source, "feature": feature, "r": r, "p_value": p, "n": len(group)})
    return pd.DataFrame(rows, columns=["dataset", "source", "feature", "r", "p_value", "n"])


def source_agreement(targets: pd.DataFrame) -> pd.DataFrame:
    """Long table: dataset, feature, source_a, source_b, r, p_value, n, for each pair of sources
    (a < b) that share lesions of a dataset."""
    available = targets[targets["available"]]
    rows = []
    for (dataset, feature), group in available.groupby(["dataset", "feature"], sort=True):
        wide = group.pivot_table(index="image_id", columns="source", values="target", aggfunc="first")
        for a, b in itertools.combinations(sorted(wide.columns), 2):
            both = wide[[a, b]].dropna()
            r, p = _pearson(both[a].to_numpy(float), both[b].to_numpy(float))
            rows.append({"dataset": dataset, "feature": feature, "source_a": a, "source_b": b,
                         "r": r, "p_value": p, "n": len(both)})
    return pd.DataFrame(rows, columns=["dataset", "feature", "source_a", "source_b", "r", "p_value", "n"])


# --- Cheplygina & Pluim: disagreement is informative ----------------------------------------

def disagreement_features(
    annotations: pd.DataFrame, *, features: Sequence[str], annotator_group: str | None = None,
    source: str | None = None, dataset: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw, moments): one row per lesion scored on every feature by every annotator.

    raw: one column per (feature, annotator) with the raw score, ``<feature>:<annotator>``.
    moments: per feature, mean/std/skewness/kurtosis across annotators of the per-annotator
    z-scores, ``<moment>:<feature>``. Skewness and kurtosis of annotators who agree exactly are
    undefined; they are set to 0 (the value of a symmetric, normal-tailed spread) so the lesion is
    kept. Lesions missing any score are left out; the returned frames say how many remain.
    """
    raw = wide_annotations(annotations, annotator_group=annotator_group, source=source,
                           dataset=dataset, features=features).dropna()
    selected = select_annotations(annotations, annotator_group=annotator_group, source=source, dataset=dataset,
                                  features=features)
    selected = selected[selected["image_id"].isin(raw.index)]
    z = standardise_per_annotator(selected)
    z_wide = z.pivot_table(index="image_id", columns=["feature", "annotator"], values="z",
                           aggfunc="first").loc[raw.index]
    moments = {}
    for feature in features:
        block = z_wide[feature].to_numpy(float)
        mean = block.mean(axis=1)
        centred = block - mean[:, None]
        m2 = (centred**2).mean(axis=1)
        flat = m2 <= 1e-24
        with np.errstate(divide="ignore", invalid="ignore"):
            skew = np.where(flat, 0.0, (centred**3).mean(axis=1) / m2**1.5)
            kurt = np.where(flat, 0.0, (centred**4).mean(axis=1) / m2**2 - 3.0)
        moments[f"mean:{feature}"] = mean
        moments[f"std:{feature}"] = np.sqrt(m2)
        moments[f"skewness:{feature}"] = skew
        moments[f"kurtosis:{feature}"] = kurt
    moment_frame = pd.DataFrame(moments, index=raw.index)
    ordered = [f"{m}:{f}" for m in MOMENTS for f in features]
    return raw, moment_frame[ordered]


def feature_sets(raw: pd.DataFrame, moments: pd.DataFrame, features: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The study's feature sets: all raw, each feature type, each annotator, each moment, all moments."""
    sets: dict[str, pd.DataFrame] = {"all annotations": raw}
    for feature in features:
        sets[f"feature type: {feature}"] = raw[[c for c in raw.columns if c.split(":", 1)[0] == feature]]
    annotators = list(dict.fromkeys(c.split(":", 1)[1] for c in raw.columns))
    for annotator in annotators:
        sets[f"annotator: {annotator}"] = raw[[c for c in raw.columns if c.split(":", 1)[1] == annotator]]
    for moment in MOMENTS:
        sets[f"moment: {moment}"] = moments[[c for c in moments.columns if c.split(":", 1)[0] == moment]]
    sets["all moments"] = moments
    return sets


def cross_validated_auc(x: pd.DataFrame, y: pd.Series, *, folds: int, seed: int) -> tuple[float, float, int]:
    """(mean AUC, std AUC, folds used) of a logistic classifier under stratified k-fold CV.

    Folds are capped at the minority class count (StratifiedKFold needs one of each class per
    fold); the number used is returned so a reader sees when it was fewer than asked.
    """
    minority = int(y.value_counts().min()) if y.nunique() == 2 else 0
    used = min(folds, minority)
    if used < 2:
        return float("nan"), float("nan"), used
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=used, shuffle=True, random_state=seed)
    scores = cross_val_score(model, x.to_numpy(float), y.to_numpy(int), cv=cv, scoring="roc_auc")
    return float(scores.mean()), float(scores.std()), used


def disagreement_auc(
    annotations: pd.DataFrame, images: pd.DataFrame, experiment: Mapping[str, Any], *, folds: int, seed: int
) -> pd.DataFrame:
    """One row per feature set of one experiment (a config entry: name, features, and
    annotator_group and/or source and dataset): n_features, n_lesions, n_abnormal, folds,
    auc_mean, auc_std."""
    features = list(experiment["features"])
    raw, moments = disagreement_features(
        annotations, features=features, annotator_group=experiment.get("annotator_group"),
        source=experiment.get("source"), dataset=experiment.get("dataset"),
    )
    labels = images.dropna(subset=["abnormal"]).drop_duplicates("image_id").set_index("image_id")["abnormal"]
    keep = raw.index.intersection(labels.index)
    if len(keep) == 0:
        raise ValueError(f"disagreement experiment {experiment['name']!r}: no lesion has both complete "
                         "annotations and a known abnormal label")
    y = labels.loc[keep].astype(int)
    rows = []
    for name, x in feature_sets(raw.loc[keep], moments.loc[keep], features).items():
        auc_mean, auc_std, used = cross_validated_auc(x, y, folds=folds, seed=seed)
        rows.append({
            "experiment": experiment["name"], "feature_set": name, "n_features": x.shape[1],
            "n_lesions": len(y), "n_abnormal": int(y.sum()),
            "lesions_left_out": _scored_lesions(annotations, experiment) - len(y),
            "folds": used, "auc_mean": auc_mean, "auc_std": auc_std,
        })
    return pd.DataFrame(rows)


def _scored_lesions(annotations: pd.DataFrame, experiment: Mapping[str, Any]) -> int:
    """Lesions with any score in the experiment; those not used lacked a score or a label."""
    frame = select_annotations(annotations, annotator_group=experiment.get("annotator_group"),
                               source=experiment.get("source"), dataset=experiment.get("dataset"),
                               features=experiment["features"])
    return int(frame["image_id"].nunique())


DISAGREEMENT_COLUMNS = ["experiment", "feature_set", "n_features", "n_lesions", "n_abnormal", "lesions_left_out",
                        "folds", "auc_mean", "auc_std"]


def disagreement_table(annotations: pd.DataFrame, images: pd.DataFrame, experiments: Sequence[Mapping[str, Any]],
                       *, folds: int, seed: int) -> pd.DataFrame:
    """`disagreement_auc` of every configured experiment, one table (empty, with its columns, for none)."""
    frames = [disagreement_auc(annotations, images, experiment, folds=folds, seed=seed) for experiment in experiments]
    if not frames:
        return pd.DataFrame(columns=DISAGREEMENT_COLUMNS)
    return pd.concat(frames, ignore_index=True)[DISAGREEMENT_COLUMNS]


# --- synthetic ground truth -----------------------------------------------------------------

def _precision_recall(predicted: pd.Series, actual: pd.Series) -> dict[str, float]:
    tp = int((predicted & actual).sum())
    fp = int((predicted & ~actual).sum())
    fn = int((~predicted & actual).sum())
    return {
        "true_positives": tp, "false_positives": fp, "false_negatives": fn,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
    }


def spammer_detection(decisions: pd.DataFrame, workers: pd.DataFrame, rules: Sequence[str]) -> pd.DataFrame:
    """Precision and recall of rejection against simulated spammers.

    Assignment level: positive = an answer by a spammer; predicted = the rule flags it (each rule
    alone, from its flag) or the funnel rejects it by any rule ("all rules"). Worker level: a
    worker counts as rejected when none of their answers is kept.
    """
    truth = workers.assign(worker_id=workers["worker_id"].astype(str)).set_index("worker_id")["is_spammer"]
    truth = truth.astype(str).str.lower().isin(["1", "true", "yes"])
    usable = decisions[decisions["usable"].astype(bool)].copy()
    usable["worker_id"] = usable["worker_id"].astype(str)
    unknown = set(usable["worker_id"]) - set(truth.index)
    if unknown:
        raise ValueError(f"{len(unknown)} worker(s) missing from the truth table, e.g. {sorted(unknown)[:3]}")
    spam = usable["worker_id"].map(truth).astype(bool)
    rows = []
    for rule in rules:
        rows.append({"level": "assignment", "rule": rule,
                     **_precision_recall(usable[f"flag_{rule}"].astype(bool), spam)})
    rejected = usable["rejected_by"].notna()
    rows.append({"level": "assignment", "rule": "all rules", **_precision_recall(rejected, spam)})
    per_worker = rejected.groupby(usable["worker_id"]).all()
    rows.append({"level": "worker", "rule": "all rules",
                 **_precision_recall(per_worker, truth.reindex(per_worker.index).astype(bool))})
    return pd.DataFrame(rows)

"""Scores of every model and ensemble: per-fold AUC, pooled out-of-fold AUC with a bootstrap CI, and
paired comparisons against the baseline (bootstrap CI of the difference, DeLong, Holm).

Input is one long table of test predictions (`test_predictions`): model, kind, source, backbone,
fold, image_id, score, label. With `split.scheme: kfold` every lesion is tested exactly once, so a
model's folds pool into one out-of-fold prediction per lesion; with `repeated_holdout` the test sets
overlap, pooling would count lesions twice, and only per-fold figures are reported.

Tables (layouts in docs/data-model.md):
- `auc_folds`: one row per (model, backbone, fold);
- `auc_summary`: one row per (model, backbone): fold mean and sd, pooled AUC with its CI;
- `auc_table`: ENHANCE Table 5's shape (rows models, columns backbones), numeric;
- `comparisons`: one row per comparison; `roc`: pooled ROC points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crowdskin.evaluate import stats
from crowdskin.evaluate.ensemble import ALL_BACKBONES
from crowdskin.train.kinds import kind_order

REFERENCE = "baseline"
IDENTITY = ["model", "kind", "source", "backbone"]
TEST_COLUMNS = [*IDENTITY, "fold", "image_id", "score", "label"]


@dataclass(frozen=True)
class Settings:
    scheme: str  # split.scheme: kfold | repeated_holdout
    resamples: int
    confidence: float
    seed: int
    # (model, reference) pairs compared besides each model against the baseline: what each task's
    # kind asks for (crowdskin.evaluate.ensemble.extra_comparisons).
    extra_comparisons: tuple[tuple[str, str], ...] = ()


@dataclass
class Scores:
    auc_folds: pd.DataFrame
    auc_summary: pd.DataFrame
    auc_table: pd.DataFrame
    comparisons: pd.DataFrame
    roc: pd.DataFrame
    metrics: dict[str, Any]
    heads: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=HEAD_SUMMARY_COLUMNS))


def score(test: pd.DataFrame, settings: Settings, *, backbones: Sequence[str] | None = None,
          heads: pd.DataFrame | None = None) -> Scores:
    """Every table of results/scores/ from the test predictions of every model and ensemble, and
    from `heads` (HEAD_COLUMNS: the annotation heads' test predictions) the per-head table."""
    missing = [c for c in TEST_COLUMNS if c not in test.columns]
    if missing:
        raise ValueError(f"test predictions lack column(s) {missing}")
    test = test[TEST_COLUMNS].copy()
    test["source"] = test["source"].fillna("")
    order = _model_order(test)
    backbone_order = list(backbones) if backbones is not None else list(dict.fromkeys(test["backbone"]))
    if ALL_BACKBONES in set(test["backbone"]) and ALL_BACKBONES not in backbone_order:
        backbone_order.append(ALL_BACKBONES)

    folds = auc_folds(test)
    pooled, pool_note = pool(test, settings.scheme)
    bootstrap = _pooled_bootstrap(pooled, settings)
    summary = auc_summary(folds, pooled, bootstrap, pool_note, order, backbone_order, settings.confidence)
    comparisons = compare(test, pooled, bootstrap, settings, pool_note is None)
    model_rank = {m: i for i, m in enumerate(order)}
    backbone_rank = {b: i for i, b in enumerate(backbone_order)}
    comparisons = comparisons.sort_values(
        ["backbone", "model", "reference"], key=lambda c: c.map(backbone_rank) if c.name == "backbone"
        else c.map(model_rank) if c.name == "model" else c.map(model_rank), kind="stable").reset_index(drop=True)
    roc = roc_points(pooled)
    head_table = head_summary(heads if heads is not None else pd.DataFrame(columns=HEAD_COLUMNS), settings.scheme)
    return Scores(auc_folds=folds, auc_summary=summary, auc_table=wide_table(summary, backbone_order),
                  comparisons=comparisons, roc=roc, metrics=metrics(summary, comparisons, head_table),
                  heads=head_table)


# ----------------------------------------------------------------------------------------------------
# Annotation heads

# The long table of the heads' test predictions on lesions whose target exists.
HEAD_COLUMNS = ["model", "kind", "backbone", "fold", "head", "image_id", "prediction", "target"]
HEAD_SUMMARY_COLUMNS = ["model", "kind", "backbone", "head", "n_folds", "mean_mae", "mean_spearman", "n_pooled",
                        "pooled_mae", "pooled_spearman", "note"]


def head_rows(predictions: pd.DataFrame) -> pd.DataFrame:
    """From one predictions.parquet: per annotation head (`prediction_<head>` columns), its test
    rows with a target, as HEAD_COLUMNS without the model's identity."""
    test = predictions[predictions["split"] == "test"]
    parts = []
    for column in predictions.columns:
        if not column.startswith("prediction_"):
            continue
        head = column.removeprefix("prediction_")
        rows = test[test[f"available_{head}"].astype(bool)]
        parts.append(pd.DataFrame({"fold": rows["fold"].to_numpy(), "head": head,
                                   "image_id": rows["image_id"].to_numpy(),
                                   "prediction": rows[column].to_numpy(np.float64),
                                   "target": rows[f"target_{head}"].to_numpy(np.float64)}))
    if not parts:
        return pd.DataFrame(columns=["fold", "head", "image_id", "prediction", "target"])
    return pd.concat(parts, ignore_index=True)


def _mae_and_spearman(part: pd.DataFrame) -> tuple[float, float]:
    if part.empty:
        return math.nan, math.nan
    mae = float((part["prediction"] - part["target"]).abs().mean())
    if len(part) < 2 or part["prediction"].nunique() < 2 or part["target"].nunique() < 2:
        return mae, math.nan
    from scipy.stats import spearmanr

    return mae, float(spearmanr(part["prediction"].to_numpy(), part["target"].to_numpy()).statistic)


def head_summary(heads: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """Per (model, backbone, head): the test MAE and Spearman correlation of the head's prediction
    against its target, the mean over folds and, with k-fold splits, pooled over the folds' test
    lesions (each tested once). Spearman is NaN where a side is constant."""
    missing = [c for c in HEAD_COLUMNS if c not in heads.columns]
    if missing:
        raise ValueError(f"head predictions lack column(s) {missing}")
    rows = []
    for (model, kind, backbone, head), part in heads.groupby(["model", "kind", "backbone", "head"], sort=False):
        per_fold = [_mae_and_spearman(fold_part) for _, fold_part in part.groupby("fold", sort=True)]
        maes = [m for m, _ in per_fold if not math.isnan(m)]
        rhos = [r for _, r in per_fold if not math.isnan(r)]
        row = {"model": model, "kind": kind, "backbone": backbone, "head": head, "n_folds": len(per_fold),
               "mean_mae": float(np.mean(maes)) if maes else math.nan,
               "mean_spearman": float(np.mean(rhos)) if rhos else math.nan,
               "n_pooled": 0, "pooled_mae": math.nan, "pooled_spearman": math.nan, "note": ""}
        if scheme == "kfold":
            row["n_pooled"] = len(part)
            row["pooled_mae"], row["pooled_spearman"] = _mae_and_spearman(part)
        else:
            row["note"] = f"split.scheme {scheme}: test sets overlap, so only per-fold figures are reported"
        rows.append(row)
    return pd.DataFrame(rows, columns=HEAD_SUMMARY_COLUMNS)


# ----------------------------------------------------------------------------------------------------
# Per fold and pooled


def _auc_with_note(labels: np.ndarray, scores: np.ndarray) -> tuple[float, str]:
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        cls = "abnormal" if positives else "normal"
        return math.nan, f"test set has one class only ({len(labels)} {cls})"
    return stats.auc(labels, scores), ""


def auc_folds(test: pd.DataFrame) -> pd.DataFrame:
    """AUC, n test and n abnormal per (model, backbone, fold); NaN with a reason for one class only."""
    rows = []
    for (model, kind, source, backbone, fold), part in test.groupby([*IDENTITY, "fold"], sort=False):
        labels = part["label"].to_numpy().astype(int)
        value, note = _auc_with_note(labels, part["score"].to_numpy(np.float64))
        rows.append({"model": model, "kind": kind, "source": source, "backbone": backbone, "fold": int(fold),
                     "auc": value, "n_test": len(part), "n_abnormal": int(labels.sum()), "note": note})
    return pd.DataFrame(rows, columns=[*IDENTITY, "fold", "auc", "n_test", "n_abnormal", "note"])


def pool(test: pd.DataFrame, scheme: str) -> tuple[dict[tuple[str, str], pd.DataFrame], str | None]:
    """Out-of-fold predictions per (model, backbone), indexed by image_id, or ({}, why not)."""
    if scheme != "kfold":
        return {}, f"split.scheme {scheme}: test sets overlap, so only per-fold figures are reported"
    pooled: dict[tuple[str, str], pd.DataFrame] = {}
    for (model, backbone), part in test.groupby(["model", "backbone"], sort=False):
        twice = part["image_id"][part["image_id"].duplicated()]
        if len(twice):
            return {}, (f"{model}/{backbone} tests lesion(s) {sorted(set(twice))[:5]} in more than one fold: "
                        f"not a k-fold split, so only per-fold figures are reported")
        pooled[(model, backbone)] = part.set_index("image_id").sort_index()[["score", "label"]]
    return pooled, None


@dataclass
class _Bootstrap:
    """One group's paired bootstrap: models tested on the same lesions share the resamples."""

    samples: np.ndarray  # resamples x models
    columns: dict[str, int]
    lesions: pd.Index


def _pooled_bootstrap(pooled: Mapping[tuple[str, str], pd.DataFrame],
                      settings: Settings) -> dict[tuple[str, str], _Bootstrap]:
    """Paired stratified bootstrap AUC samples of every pooled model, one draw per group of models
    with the same lesions (per backbone, usually all of them): their CIs and differences come from
    the same resamples, and sorting once per model costs less than once per comparison."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (model, backbone), frame in pooled.items():
        groups.setdefault((backbone, tuple(frame.index)), []).append(model)
    out: dict[tuple[str, str], _Bootstrap] = {}
    for (backbone, lesions), models in groups.items():
        frames = [pooled[(m, backbone)] for m in models]
        labels = frames[0]["label"].to_numpy().astype(int)
        if labels.sum() == 0 or labels.sum() == len(labels):
            continue
        matrix = np.column_stack([f["score"].to_numpy(np.float64) for f in frames])
        samples = stats.bootstrap_auc_samples(labels, matrix, n_resamples=settings.resamples, seed=settings.seed)
        boot = _Bootstrap(samples, {m: i for i, m in enumerate(models)}, pd.Index(lesions))
        for model in models:
            out[(model, backbone)] = boot
    return out


def auc_summary(folds: pd.DataFrame, pooled: Mapping[tuple[str, str], pd.DataFrame],
                bootstrap: Mapping[tuple[str, str], _Bootstrap], pool_note: str | None,
                order: Sequence[str], backbones: Sequence[str], confidence: float = 0.95) -> pd.DataFrame:
    rows = []
    for (model, kind, source, backbone), part in folds.groupby(IDENTITY, sort=False):
        values = part["auc"].dropna()
        notes = [f"fold {f}: {n}" for f, n in zip(part["fold"], part["note"], strict=True) if n]
        row = {"model": model, "kind": kind, "source": source, "backbone": backbone, "n_folds": len(values),
               "mean_auc": float(values.mean()) if len(values) else math.nan,
               "sd_auc": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
               "pooled_auc": math.nan, "pooled_ci_low": math.nan, "pooled_ci_high": math.nan, "n_pooled": 0}
        frame = pooled.get((model, backbone))
        if frame is not None:
            labels = frame["label"].to_numpy().astype(int)
            row["n_pooled"] = len(frame)
            row["pooled_auc"], note = _auc_with_note(labels, frame["score"].to_numpy(np.float64))
            if note:
                notes.append(f"pooled: {note}")
            boot = bootstrap.get((model, backbone))
            if boot is not None:
                column = boot.samples[:, boot.columns[model]]
                row["pooled_ci_low"], row["pooled_ci_high"] = stats.percentile_interval(column, confidence)
        elif pool_note:
            notes.append(pool_note)
        row["note"] = "; ".join(notes)
        rows.append(row)
    table = pd.DataFrame(rows, columns=[*IDENTITY, "n_folds", "mean_auc", "sd_auc", "pooled_auc", "pooled_ci_low",
                                        "pooled_ci_high", "n_pooled", "note"])
    rank = {m: i for i, m in enumerate(order)}
    backbone_rank = {b: i for i, b in enumerate(backbones)}
    table["_m"] = table["model"].map(rank)
    table["_b"] = table["backbone"].map(backbone_rank).fillna(len(backbone_rank))
    return table.sort_values(["_m", "_b"], kind="stable").drop(columns=["_m", "_b"]).reset_index(drop=True)


def _model_order(test: pd.DataFrame) -> list[str]:
    """Models in Table 5's order: by kind, then as they first appear."""
    first = test.drop_duplicates("model")
    # A task averaged over the backbones keeps its own kind: the row is the task's.
    kinds = test[test["backbone"] != ALL_BACKBONES].drop_duplicates("model").set_index("model")["kind"]
    kind_of = {m: kinds.get(m, k) for m, k in zip(first["model"], first["kind"], strict=True)}
    order = kind_order()
    return sorted(first["model"], key=lambda m: order.get(kind_of[m], max(order.values()) + 1))


def wide_table(summary: pd.DataFrame, backbones: Sequence[str]) -> pd.DataFrame:
    """ENHANCE Table 5's shape: one row per model, per backbone its fold mean, sd, pooled AUC and CI."""
    values = ["mean_auc", "sd_auc", "pooled_auc", "pooled_ci_low", "pooled_ci_high"]
    models = list(dict.fromkeys(summary["model"]))
    kinds = summary[summary["backbone"] != ALL_BACKBONES].drop_duplicates("model").set_index("model")["kind"]
    fallback = summary.drop_duplicates("model").set_index("model")["kind"]
    wide = pd.DataFrame({"model": models, "kind": [kinds.get(m, fallback[m]) for m in models]})
    indexed = summary.set_index(["model", "backbone"])
    for backbone in backbones:
        for value in values:
            wide[f"{backbone}_{value}"] = [
                indexed[value].get((m, backbone), math.nan) for m in models
            ]
    return wide


def format_table(wide: pd.DataFrame, backbones: Sequence[str]) -> pd.DataFrame:
    """Table 5 as text cells: `mean ± sd` over folds, then the pooled AUC with its 95 % CI."""
    def cell(row: pd.Series, backbone: str) -> str:
        mean, sd = row[f"{backbone}_mean_auc"], row[f"{backbone}_sd_auc"]
        pooled, low, high = (row[f"{backbone}_pooled_{k}"] for k in ("auc", "ci_low", "ci_high"))
        if _nan(mean) and _nan(pooled):
            return ""
        text = "n/a" if _nan(mean) else f"{mean:.3f}" + ("" if _nan(sd) else f" ± {sd:.3f}")
        if not _nan(pooled):
            text += f" · {pooled:.3f}" + ("" if _nan(low) else f" [{low:.3f}, {high:.3f}]")
        return text

    out = pd.DataFrame({"model": wide["model"]})
    for backbone in backbones:
        label = "all backbones" if backbone == ALL_BACKBONES else backbone
        out[label] = [cell(row, backbone) for _, row in wide.iterrows()]
    return out


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ----------------------------------------------------------------------------------------------------
# Comparisons


def comparison_pairs(models: Iterable[tuple[str, str]],
                     extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str, str]]:
    """(model, reference, backbone): each model against the baseline of its backbone, then each
    `extra` (model, reference) pair on every backbone where both were scored (CROWDSIM's retraining
    against incremental training, a multi-head model against its source's ensemble, ...)."""
    ordered = list(dict.fromkeys(models))
    present = set(ordered)
    pairs = []
    for model, backbone in ordered:
        if model != REFERENCE and (REFERENCE, backbone) in present:
            pairs.append((model, REFERENCE, backbone))
    for model, reference in extra:
        for backbone in dict.fromkeys(b for _, b in ordered):
            if (model, backbone) in present and (reference, backbone) in present:
                pairs.append((model, reference, backbone))
    return pairs


COMPARISON_COLUMNS = ["model", "reference", "backbone", "scope", "n_test", "n_abnormal", "auc_model",
                      "auc_reference", "difference", "ci_low", "ci_high", "delong_z", "delong_p", "holm_p",
                      "adjusted_ci_low", "adjusted_ci_high", "note"]


def _paired(model: pd.DataFrame, reference: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    joined = model.join(reference, how="inner", suffixes=("_model", "_reference"))
    note = ""
    if len(joined) != len(model) or len(joined) != len(reference):
        note = f"paired on the {len(joined)} lesions both tested ({len(model)} and {len(reference)})"
    if (joined["label_model"] != joined["label_reference"]).any():
        raise ValueError("a lesion has different labels in two models' predictions")
    return joined, note


def _compare_one(joined: pd.DataFrame, settings: Settings, boot: _Bootstrap | None,
                 columns: tuple[str, str]) -> dict[str, Any]:
    labels = joined["label_model"].to_numpy().astype(int)
    a = joined["score_model"].to_numpy(np.float64)
    b = joined["score_reference"].to_numpy(np.float64)
    row: dict[str, Any] = {"n_test": len(joined), "n_abnormal": int(labels.sum())}
    m, n = int(labels.sum()), int(len(labels) - labels.sum())
    if m == 0 or n == 0:
        return row | {"note": f"one class only ({m} abnormal, {n} normal): no AUC"}
    row |= {"auc_model": stats.auc(labels, a), "auc_reference": stats.auc(labels, b)}
    row["difference"] = row["auc_model"] - row["auc_reference"]
    if boot is not None:
        samples = boot.samples[:, boot.columns[columns[0]]] - boot.samples[:, boot.columns[columns[1]]]
    else:
        draws = stats.bootstrap_auc_samples(labels, np.column_stack([a, b]), n_resamples=settings.resamples,
                                            seed=settings.seed)
        samples = draws[:, 0] - draws[:, 1]
    row["ci_low"], row["ci_high"] = stats.percentile_interval(samples, settings.confidence)
    if m < 2 or n < 2:
        return row | {"note": f"{m} abnormal and {n} normal: too few for DeLong"}
    result = stats.delong(labels, a, b)
    row |= {"delong_z": result.z, "delong_p": result.p, "_delong_variance": result.variance}
    if math.isnan(result.p):
        row["note"] = "DeLong variance 0 with a non-zero difference: no p-value"
    return row


def compare(test: pd.DataFrame, pooled: Mapping[tuple[str, str], pd.DataFrame],
            bootstrap: Mapping[tuple[str, str], _Bootstrap], settings: Settings, use_pooled: bool) -> pd.DataFrame:
    """Paired comparisons: on the pooled out-of-fold predictions (k-fold), else per fold."""
    rows = []
    pairs = comparison_pairs(zip(test["model"], test["backbone"], strict=True), settings.extra_comparisons)
    for model, reference, backbone in pairs:
        base = {"model": model, "reference": reference, "backbone": backbone}
        if use_pooled:
            joined, note = _paired(pooled[(model, backbone)], pooled[(reference, backbone)])
            boot_m, boot_r = bootstrap.get((model, backbone)), bootstrap.get((reference, backbone))
            shared = boot_m if boot_m is not None and boot_m is boot_r and not note else None
            row = base | {"scope": "pooled"} | _compare_one(joined, settings, shared, (model, reference))
            row["note"] = "; ".join(x for x in (note, row.get("note", "")) if x)
            rows.append(row)
            continue
        on_backbone = test[test["backbone"] == backbone]
        for fold in sorted(set(on_backbone.loc[on_backbone["model"] == model, "fold"])):
            in_fold = on_backbone[on_backbone["fold"] == fold].set_index("image_id")
            joined, note = _paired(in_fold.loc[in_fold["model"] == model, ["score", "label"]],
                                   in_fold.loc[in_fold["model"] == reference, ["score", "label"]])
            row = base | {"scope": f"fold{fold}"} | _compare_one(joined, settings, None, (model, reference))
            row["note"] = "; ".join(x for x in (note, row.get("note", "")) if x)
            rows.append(row)
    table = pd.DataFrame(rows, columns=[*COMPARISON_COLUMNS, "_delong_variance"])
    has_p = table["delong_p"].notna()
    if has_p.any():
        table.loc[has_p, "holm_p"] = stats.holm(table.loc[has_p, "delong_p"].to_numpy(np.float64))
        low, high = stats.simultaneous_intervals(table.loc[has_p, "difference"].to_numpy(np.float64),
                                                 table.loc[has_p, "_delong_variance"].to_numpy(np.float64),
                                                 settings.confidence)
        table.loc[has_p, "adjusted_ci_low"], table.loc[has_p, "adjusted_ci_high"] = low, high
    table["note"] = table["note"].fillna("")
    return table[COMPARISON_COLUMNS]


# ----------------------------------------------------------------------------------------------------
# ROC points and headline metrics


def roc_points(pooled: Mapping[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """Pooled out-of-fold ROC curve per (model, backbone), as `dvc plots` reads it (x fpr, y tpr)."""
    from sklearn.metrics import roc_curve

    frames = []
    for (model, backbone), frame in pooled.items():
        labels = frame["label"].to_numpy().astype(int)
        if labels.sum() == 0 or labels.sum() == len(labels):
            continue
        fpr, tpr, _ = roc_curve(labels, frame["score"].to_numpy(np.float64))
        frames.append(pd.DataFrame({"model": model, "backbone": backbone, "fpr": fpr, "tpr": tpr}))
    if not frames:
        return pd.DataFrame(columns=["model", "backbone", "fpr", "tpr"])
    return pd.concat(frames, ignore_index=True)


def metrics(summary: pd.DataFrame, comparisons: pd.DataFrame, heads: pd.DataFrame | None = None) -> dict[str, Any]:
    """metrics.json for `dvc metrics show`: per backbone and model, the headline AUC figures, and
    per annotation head its pooled test Spearman correlation and MAE."""
    def number(value: Any) -> float | None:
        return None if _nan(value) else round(float(value), 6)

    out: dict[str, Any] = {}
    for row in summary.itertuples(index=False):
        out.setdefault(row.backbone, {})[row.model] = {
            "mean_auc": number(row.mean_auc), "sd_auc": number(row.sd_auc), "pooled_auc": number(row.pooled_auc),
            "pooled_ci_low": number(row.pooled_ci_low), "pooled_ci_high": number(row.pooled_ci_high),
        }
    for row in comparisons.itertuples(index=False):
        if row.scope == "pooled" and row.reference == REFERENCE:
            entry = out.setdefault(row.backbone, {}).setdefault(row.model, {})
            entry["difference_vs_baseline"] = number(row.difference)
            entry["holm_p_vs_baseline"] = number(row.holm_p)
    if heads is not None:
        for row in heads.itertuples(index=False):
            entry = out.setdefault(row.backbone, {}).setdefault(row.model, {})
            entry.setdefault("heads", {})[row.head] = {
                "spearman": number(row.pooled_spearman if row.n_pooled else row.mean_spearman),
                "mae": number(row.pooled_mae if row.n_pooled else row.mean_mae)}
    return out

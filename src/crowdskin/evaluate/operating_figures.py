"""Figures of the operating characteristics (crowdskin.evaluate.operating), as PNG files at most
1000 px wide: reliability diagrams with the Brier score, sensitivity and specificity at the
validation-chosen operating point, per-fold ROC curves, and the annotation heads' predictions
against their targets.

Each public function takes the tables of results/<run>/scores/, writes one PNG and returns None; a
private `_*_figure` builds the matplotlib Figure, so tests can read its legends and titles. Many
models become small multiples: one panel per model family (baseline and the randomized control, the
single-feature multi-task models of one source, the multi-head models, the ensembles, CROWDSIM) and
backbone, each with a few lines told apart by colour and marker.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

# Workflow jobs run without a display (as crowdskin.evaluate.figures).
matplotlib.use("Agg")
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from crowdskin.evaluate.ensemble import ALL_BACKBONES
from crowdskin.evaluate.figures import (
    COLOR_CYCLE,
    MARKERS,
    MAX_WIDTH_INCHES,
    NEUTRAL,
    OKABE_ITO,
    save_figure,
    themed,
)
from crowdskin.evaluate.operating import POOLED
from crowdskin.evaluate.scores import REFERENCE
from crowdskin.train.kinds import CROWD_LABELS, ENSEMBLE_KIND, TARGETS, TaskKind, kind_of, kind_order

# The evaluation figures' width: the report shows them at their own size, nothing scaled down.
WIDTH = MAX_WIDTH_INCHES
# Lines one panel may hold before a family is split over several panels.
MAX_LINES = 5


def _explanation_figure(text: str) -> Figure:
    fig = Figure(figsize=(6.0, 2.5), layout="constrained")
    ax = fig.subplots()
    ax.text(0.5, 0.5, textwrap.fill(text, 60), ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _grid(n_panels: int, n_cols: int, panel_height: float, extra: float = 0.6) -> tuple[Figure, list[Axes]]:
    n_cols = max(1, min(n_cols, n_panels))
    n_rows = math.ceil(n_panels / n_cols)
    fig = Figure(figsize=(WIDTH, extra + panel_height * n_rows), layout="constrained")
    axes = list(fig.subplots(n_rows, n_cols, squeeze=False).ravel())
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    return fig, axes[:n_panels]


def _backbones(values: Iterable[Any]) -> list[str]:
    seen = [str(v) for v in dict.fromkeys(values)]
    return [b for b in seen if b != ALL_BACKBONES] + ([ALL_BACKBONES] if ALL_BACKBONES in seen else [])


def _backbone_title(backbone: str) -> str:
    return "all backbones (averaged)" if backbone == ALL_BACKBONES else backbone


def _kind(kind: str) -> type[TaskKind] | None:
    try:
        return kind_of(kind)
    except KeyError:  # an ensemble, or a plug-in kind this process did not load
        return None


def family(kind: str, source: str, model: str = "") -> str:
    """The panel a model is drawn in, asked of its kind (never its name): the baseline with the
    randomized control, each source's single-feature multi-task models, the other models with
    annotation heads, the ensembles, the models trained on crowd labels (CROWDSIM)."""
    found = _kind(kind)
    if model == REFERENCE or (found is not None and found.randomized_control):
        return "baseline and random control"
    if kind == ENSEMBLE_KIND:
        return "ensembles"
    if found is None:
        return kind
    if found.in_source_ensemble:
        return f"{kind} · {source}" if source else kind
    if TARGETS in found.reads:
        return "multi-head models"
    if CROWD_LABELS in found.reads:
        return "CROWDSIM"
    return kind


def _short(model: str, kind: str, source: str) -> str:
    """A legend's name for a model whose panel title already says its kind and source."""
    found = _kind(kind)
    if found is not None and found.in_source_ensemble and source:
        return model.removeprefix(f"{kind}-{source}-")
    return model


def _models(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per model (model, kind, source) in Table 5's order (by kind, then as first seen), a
    task averaged over the backbones keeping its own kind."""
    per_backbone = frame[frame["backbone"] != ALL_BACKBONES]
    first = pd.concat([per_backbone, frame]).drop_duplicates("model")[["model", "kind", "source"]]
    first["source"] = first["source"].fillna("").astype(str)
    order = kind_order()
    rank = first["kind"].map(lambda k: order.get(k, max(order.values()) + 1))
    return first.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)


def _panels(frame: pd.DataFrame, *, reference: bool) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(backbone, title, [(model, legend name)]) per panel: per backbone, one panel per family of at most
    MAX_LINES models, with the baseline first in every panel when `reference` (the comparator)."""
    models = _models(frame)
    panels = []
    for backbone in _backbones(frame["backbone"]):
        present = set(frame.loc[frame["backbone"] == backbone, "model"])
        groups: dict[str, list[tuple[str, str]]] = {}
        for row in models.itertuples(index=False):
            if row.model in present:
                groups.setdefault(family(row.kind, row.source, row.model), []).append(
                    (row.model, _short(row.model, row.kind, row.source)))
        for title, members in groups.items():
            others = [m for m in members if m[0] != REFERENCE]
            lead = [(REFERENCE, REFERENCE)] if REFERENCE in present and (reference or len(others) < len(members)) \
                else []
            size = MAX_LINES - len(lead)
            chunks = [others[i:i + size] for i in range(0, len(others), size)] or [[]]
            for index, chunk in enumerate(chunks):
                name = title if len(chunks) == 1 else f"{title} ({index + 1}/{len(chunks)})"
                if len(_backbones(frame["backbone"])) > 1:
                    name += f" · {_backbone_title(backbone)}"
                panels.append((backbone, name, lead + chunk))
    return panels


def _style(index: int, model: str) -> tuple[str, str]:
    """Colour and marker of the index-th line of a panel; the baseline is black with circles."""
    if model == REFERENCE:
        return OKABE_ITO["black"], MARKERS[0]
    return COLOR_CYCLE[index % len(COLOR_CYCLE)], MARKERS[(index + 1) % len(MARKERS)]


def _n(value: Any) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True


# ----------------------------------------------------------------------------------------------------
# Reliability diagrams


def _brier_text(row: pd.Series | None) -> str:
    if row is None or _n(row["brier"]):
        return "Brier n/a"
    text = f"Brier {row['brier']:.3f}"
    if not (_n(row["ci_low"]) or _n(row["ci_high"])):
        text += f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    return text


def _pooled_points(calibration: pd.DataFrame) -> pd.DataFrame:
    """The pooled rows; where a model has per-fold rows only (test sets overlap), its folds' bins
    added up (a lesion tested twice counts twice)."""
    pooled = calibration[calibration["scope"] == POOLED]
    rest = calibration[~calibration.set_index(["model", "backbone"]).index.isin(
        pooled.set_index(["model", "backbone"]).index)]
    if rest.empty:
        return pooled
    weighted = rest.assign(_p=rest["mean_predicted"] * rest["count"])
    summed = weighted.groupby(["model", "kind", "source", "backbone", "bin"], sort=False, dropna=False).agg(
        count=("count", "sum"), n_abnormal=("n_abnormal", "sum"), _p=("_p", "sum")).reset_index()
    summed["mean_predicted"] = summed["_p"] / summed["count"]
    summed["observed"] = summed["n_abnormal"] / summed["count"]
    return pd.concat([pooled, summed.drop(columns="_p").assign(scope="folds")], ignore_index=True)


def _brier_rows(brier: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    rows: dict[tuple[str, str], pd.Series] = {}
    for (model, backbone), part in brier.groupby(["model", "backbone"], sort=False):
        pooled = part[part["scope"] == POOLED]
        if len(pooled):
            rows[(model, backbone)] = pooled.iloc[0]
        else:
            # Per-fold scores only: their mean, without an interval.
            rows[(model, backbone)] = pd.Series({"brier": part["brier"].mean(), "ci_low": math.nan,
                                                 "ci_high": math.nan})
    return rows


@themed
def _calibration_figure(calibration: pd.DataFrame, brier: pd.DataFrame) -> Figure:
    if calibration.empty:
        return _explanation_figure("No reliability points: there are no test predictions.")
    points = _pooled_points(calibration)
    briers = _brier_rows(brier)
    panels = _panels(points, reference=True)
    fig, axes = _grid(len(panels), 3, 3.5, extra=0.8)
    largest = float(points["count"].max())
    for ax, (backbone, title, members) in zip(axes, panels, strict=True):
        ax.plot([0, 1], [0, 1], color=NEUTRAL, linestyle="--", linewidth=0.8)
        for index, (model, name) in enumerate(members):
            part = points[(points["model"] == model) & (points["backbone"] == backbone)].sort_values("bin")
            color, marker = _style(index, model)
            label = f"{name}: {_brier_text(briers.get((model, backbone)))}"
            ax.plot(part["mean_predicted"], part["observed"], color=color, linewidth=1.2, label=label,
                    marker=marker, markersize=4, linestyle="-" if model != REFERENCE else (0, (4, 2)))
            # Marker area grows with the bin's count (square root: the sparse middle bins stay visible).
            ax.scatter(part["mean_predicted"], part["observed"], s=6 + 60 * np.sqrt(part["count"] / largest),
                       color=color, marker=marker, edgecolors="white", linewidths=0.4, zorder=3)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_box_aspect(1)
        ax.set_title(title)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed fraction abnormal")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7.5, frameon=False, handlelength=2.2)
    scope = "pooled out-of-fold test predictions" if (points["scope"] == POOLED).all() \
        else "test predictions of every fold together"
    fig.suptitle(f"Reliability diagrams, {scope}\n10 equal bins; marker area: lesions in the bin; grey dashed: "
                 f"perfect calibration; legend: Brier score [95 % bootstrap CI]", fontsize=9)
    return fig


def reliability_diagram(calibration: pd.DataFrame, brier: pd.DataFrame, path: str | Path) -> None:
    """Small multiples (one panel per model family and backbone, the baseline in each) of the
    reliability points, each model's legend entry giving its Brier score with the bootstrap CI.

    `calibration`: calibration.csv; `brier`: brier.csv."""
    save_figure(_calibration_figure(calibration, brier), path)


# ----------------------------------------------------------------------------------------------------
# Operating point


def _counts_text(row: pd.Series) -> str:
    return (f"TP {int(row['tp'])}  FN {int(row['fn'])}  ·  FP {int(row['fp'])}  TN {int(row['tn'])}"
            f"   (sens {row['sensitivity']:.2f}, spec {row['specificity']:.2f})")


@themed
def _operating_figure(operating: pd.DataFrame) -> Figure:
    if operating.empty:
        return _explanation_figure("No operating points: there are no test predictions.")
    pooled = operating[operating["scope"] == POOLED]
    if pooled.empty:
        # Per-fold rows only (test sets overlap): their confusion matrices summed, for the figure.
        summed = operating.groupby(["model", "kind", "source", "backbone"], sort=False, dropna=False)[
            ["tp", "fn", "fp", "tn"]].sum().reset_index()
        summed["sensitivity"] = summed["tp"] / (summed["tp"] + summed["fn"])
        summed["specificity"] = summed["tn"] / (summed["tn"] + summed["fp"])
        pooled = summed
        scope = "every fold's test rows together (test sets overlap: a lesion may count twice)"
    else:
        scope = "pooled over the folds, each fold at its own threshold"
    backbones = _backbones(pooled["backbone"])
    models = _models(pooled)
    heights = [len(pooled[pooled["backbone"] == b]) for b in backbones]
    fig = Figure(figsize=(WIDTH, 1.2 + 0.26 * sum(heights) + 0.7 * len(backbones)), layout="constrained")
    axes = fig.subplots(len(backbones), 1, squeeze=False, height_ratios=[h + 2 for h in heights])[:, 0]
    lows = [pooled.get(c, pd.Series(dtype=float)) for c in ("sensitivity_low", "specificity_low")]
    low = min([float(np.nanmin(v)) for v in [*lows, pooled["sensitivity"], pooled["specificity"]] if len(v)
               and np.isfinite(v).any()] + [1.0])
    series = (("sensitivity", OKABE_ITO["vermillion"], "o", -0.17), ("specificity", OKABE_ITO["blue"], "s", 0.17))
    for ax, backbone in zip(axes, backbones, strict=True):
        rows = pooled[pooled["backbone"] == backbone].set_index("model")
        names = [m for m in models["model"] if m in rows.index]
        for y, model in enumerate(names):
            row = rows.loc[model]
            for column, color, marker, offset in series:
                if f"{column}_low" in row and not _n(row[f"{column}_low"]):
                    ax.hlines(y + offset, row[f"{column}_low"], row[f"{column}_high"], color=color, linewidth=1.6)
                ax.plot([row[column]], [y + offset], marker=marker, color=color, linestyle="none", markersize=5)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlim(max(0.0, low - 0.05), 1.0)
        ax.grid(axis="x", color="#E5E5E5", linewidth=0.6)
        ax.set_xlabel("sensitivity / specificity on test, 95 % Wilson interval")
        if len(backbones) > 1:
            ax.set_title(_backbone_title(backbone), loc="left")
        # The confusion matrix of each row as a right-hand column: the layout makes room for it.
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        right.set_yticks(range(len(names)), [_counts_text(rows.loc[m]) for m in names], fontsize=7.5)
        right.tick_params(axis="y", length=0)
        right.spines["right"].set_visible(False)
    handles = [Line2D([], [], color=c, marker=m, linestyle="-", label=n) for n, c, m, _ in series]
    fig.legend(handles=handles, loc="outside upper right", ncols=2, frameon=False)
    fig.suptitle(f"Operating point chosen on validation (Youden's J), applied to test; {scope}", fontsize=9,
                 x=0.01, ha="left")
    return fig


def operating_point_chart(operating: pd.DataFrame, path: str | Path) -> None:
    """Per backbone, one row per model: test sensitivity and specificity at the thresholds chosen on
    validation, with Wilson intervals, and the confusion matrix's counts in a right-hand column.

    `operating`: operating_point.csv (its `pooled` rows; with per-fold rows only, their sum)."""
    save_figure(_operating_figure(operating), path)


# ----------------------------------------------------------------------------------------------------
# Per-fold ROC


def _fold_styles(folds: Sequence[int]) -> dict[int, tuple[str, str]]:
    return {f: (COLOR_CYCLE[i % len(COLOR_CYCLE)], MARKERS[i % len(MARKERS)]) for i, f in enumerate(folds)}


def _curve_auc(curve: pd.DataFrame) -> float:
    return float(np.trapezoid(curve["tpr"], curve["fpr"]))


@themed
def _fold_roc_figure(fold_roc: pd.DataFrame, operating: pd.DataFrame) -> Figure:
    if fold_roc.empty:
        return _explanation_figure("No per-fold ROC curves: no fold's test set has both classes.")
    folds = sorted(int(f) for f in fold_roc["fold"].unique())
    styles = _fold_styles(folds)
    models = _models(fold_roc)
    pairs = [(m, b) for b in _backbones(fold_roc["backbone"]) for m in models["model"]
             if ((fold_roc["model"] == m) & (fold_roc["backbone"] == b)).any()]
    several = len(_backbones(fold_roc["backbone"])) > 1
    fig, axes = _grid(len(pairs), 5, 2.25, extra=0.9)
    points = operating[operating["scope"].astype(str).str.startswith("fold")] if len(operating) else operating
    for index, (ax, (model, backbone)) in enumerate(zip(axes, pairs, strict=True)):
        ax.plot([0, 1], [0, 1], color=NEUTRAL, linestyle="--", linewidth=0.7)
        part = fold_roc[(fold_roc["model"] == model) & (fold_roc["backbone"] == backbone)]
        aucs = []
        for fold, curve in part.groupby("fold", sort=True):
            color, marker = styles[int(fold)]
            curve = curve.sort_values(["fpr", "tpr"], kind="stable")
            aucs.append(_curve_auc(curve))
            ax.plot(curve["fpr"], curve["tpr"], color=color, linewidth=1.0)
            chosen = points[(points["model"] == model) & (points["backbone"] == backbone)
                            & (points["scope"] == f"fold{int(fold)}")] if len(points) else points
            if len(chosen):
                row = chosen.iloc[0]
                ax.plot([1 - row["specificity"]], [row["sensitivity"]], marker=marker, color=color, markersize=5.5,
                        markeredgecolor="white", markeredgewidth=0.5, linestyle="none", zorder=3)
        title = model if not several else f"{model} · {_backbone_title(backbone)}"
        ax.set_title(f"{title}\nAUC {min(aucs):.2f}–{max(aucs):.2f}" if len(aucs) > 1 else
                     f"{title}\nAUC {aucs[0]:.2f}", fontsize=8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xticks([0, 0.5, 1])
        ax.set_yticks([0, 0.5, 1])
        if index % 5 == 0:
            ax.set_ylabel("sensitivity")
        if index >= len(pairs) - 5:
            ax.set_xlabel("1 − specificity")
    handles = [Line2D([], [], color=styles[f][0], marker=styles[f][1], label=f"fold {f}") for f in folds]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), frameon=False,
               title="line: the fold's test ROC curve; marker: its operating point chosen on validation")
    return fig


def fold_roc_curves(fold_roc: pd.DataFrame, operating: pd.DataFrame, path: str | Path) -> None:
    """One panel per model (and backbone): each fold's test ROC curve, the fold's validation-chosen
    operating point marked on it, the range of the folds' AUCs in the title.

    `fold_roc`: fold_roc.csv; `operating`: operating_point.csv (its per-fold rows)."""
    save_figure(_fold_roc_figure(fold_roc, operating), path)


# ----------------------------------------------------------------------------------------------------
# What the heads learned


@themed
def _heads_figure(points: pd.DataFrame, heads: pd.DataFrame, auc: pd.DataFrame) -> Figure:
    if points.empty:
        return _explanation_figure("No annotation heads: no model predicts an annotation score.")
    models = _models(points)
    backbones = _backbones(points["backbone"])
    styles = {b: (COLOR_CYCLE[i % len(COLOR_CYCLE)], MARKERS[i % len(MARKERS)]) for i, b in enumerate(backbones)}
    pairs = list(dict.fromkeys((m, h) for m in models["model"]
                               for h in points.loc[points["model"] == m, "head"].drop_duplicates()))
    summary = heads.set_index(["model", "backbone", "head"]) if len(heads) else None
    aucs = auc.set_index(["model", "backbone"])["auc"] if len(auc) else pd.Series(dtype=float)
    fig, axes = _grid(len(pairs), 5, 2.35, extra=0.7)
    for index, (ax, (model, head)) in enumerate(zip(axes, pairs, strict=True)):
        part = points[(points["model"] == model) & (points["head"] == head)]
        values = np.concatenate([part["prediction"].to_numpy(np.float64), part["target"].to_numpy(np.float64)])
        values = values[np.isfinite(values)]
        low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
        pad = max(high - low, 1e-6) * 0.05
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color=NEUTRAL, linestyle="--", linewidth=0.7)
        lines = []
        for backbone in backbones:
            rows = part[part["backbone"] == backbone]
            if rows.empty:
                continue
            color, marker = styles[backbone]
            ax.scatter(rows["target"], rows["prediction"], s=5, color=color, marker=marker, alpha=0.45,
                       linewidths=0)
            text = f"{backbone}: " if len(backbones) > 1 else ""
            if summary is not None and (model, backbone, head) in summary.index:
                row = summary.loc[(model, backbone, head)]
                rho = row["pooled_spearman"] if row["n_pooled"] else row["mean_spearman"]
                mae = row["pooled_mae"] if row["n_pooled"] else row["mean_mae"]
                text += f"ρ {rho:.2f} · MAE {mae:.2f}" if not _n(rho) else f"ρ n/a · MAE {mae:.2f}"
            value = aucs.get((model, backbone), math.nan)
            text += f" · AUC {value:.2f}" if not _n(value) else " · AUC n/a"
            lines.append((text, color))
        for row, (text, color) in enumerate(lines):
            ax.text(0.03, 0.97 - 0.1 * row, text, transform=ax.transAxes, ha="left", va="top", fontsize=7,
                    color=color if len(backbones) > 1 else "#222222",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 1})
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
        ax.locator_params(nbins=4)
        title = model if head in model else f"{model}\n{head}"
        ax.set_title(title if "\n" in title else f"{title}\n", fontsize=8)
        if index % 5 == 0:
            ax.set_ylabel("predicted")
        if index >= len(pairs) - 5:
            ax.set_xlabel("annotated (target)")
    if len(backbones) > 1:
        handles = [Line2D([], [], color=styles[b][0], marker=styles[b][1], linestyle="none", label=b)
                   for b in backbones]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), frameon=False)
    fig.suptitle("Annotation heads on test lesions: predicted against annotated score (dashed: equal)",
                 fontsize=9)
    return fig


def heads_scatter(points: pd.DataFrame, heads: pd.DataFrame, auc: pd.DataFrame, path: str | Path) -> None:
    """One panel per model and annotation head: the head's test predictions against the annotated
    targets, with the Spearman correlation and MAE (head_metrics layout) and the model's AUC.

    `points`: head_points.csv; `heads`: the head summary (crowdskin.evaluate.scores.head_summary);
    `auc`: (model, backbone, auc) (crowdskin.evaluate.operating.model_auc)."""
    save_figure(_heads_figure(points, heads, auc), path)

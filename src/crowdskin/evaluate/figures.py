"""Figures of the evaluation stage, as PNG files: pooled ROC curves, a forest plot of the AUC differences,
per-fold AUC dots, training curves and the MTurk filtering funnel.

Each public function takes the stage's tables (results/scores/*.csv, the training histories, the MTurk
funnel), writes one PNG and returns None. A private `_*_figure` builds the matplotlib Figure, so tests
can read its legends and labels.

Colours are the Okabe–Ito palette, which stays distinguishable with the common colour-vision deficiencies;
every colour comes with its own marker (and, for lines, line style) so the figures also read in greyscale.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec

import matplotlib

# Workflow jobs run without a display. The figures below never touch pyplot, but a caller that imports it
# after this module must not pick an interactive backend.
matplotlib.use("Agg")
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from crowdskin.evaluate.ensemble import ALL_BACKBONES
from crowdskin.evaluate.scores import REFERENCE
from crowdskin.train.kinds import ENSEMBLE_KIND, ENSEMBLE_ORDER, kind_order

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
# Yellow is last because it is faint on white; black is kept for the baseline and reference lines.
COLOR_CYCLE = tuple(OKABE_ITO[name] for name in ("blue", "orange", "bluish green", "vermillion", "reddish purple",
                                                 "sky blue", "yellow"))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINE_STYLES: tuple[Any, ...] = ("--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)))
NEUTRAL = "#7F7F7F"  # reference lines (chance, zero) that must not compete with the data
# Figures are drawn at most MAX_WIDTH_INCHES wide at DPI, i.e. 1000 px: the report shows an image at its
# own size where it fits (about 1150 px beside the sidebar in a 1600 px window) and scales a wider one
# down, which made text unreadable.
DPI = 100
MAX_WIDTH_INCHES = 10.0
_RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 7.5,
       "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False}



def _training_families() -> tuple[str, ...]:
    """The kinds of trained models, in table order (ensembles are no training family)."""
    return tuple(kind for kind, rank in sorted(kind_order().items(), key=lambda item: item[1])
                 if rank != ENSEMBLE_ORDER)


@dataclass(frozen=True)
class _Style:
    color: str
    marker: str
    linestyle: Any = "-"


_P = ParamSpec("_P")


def themed(build: Callable[_P, Figure]) -> Callable[_P, Figure]:
    """Build the figure inside the evaluation figures' matplotlib settings (every figure module's)."""
    # rc settings are read when artists are created, so the whole build runs inside the context.
    @functools.wraps(build)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Figure:
        with matplotlib.rc_context(_RC):
            return build(*args, **kwargs)

    return wrapper


def _new_figure(width: float, height: float) -> Figure:
    # A bare Figure, not pyplot's: nothing global keeps it alive, so figures returned to callers need no close().
    return Figure(figsize=(min(width, MAX_WIDTH_INCHES), height), layout="constrained")


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write `fig` as a PNG at DPI (at most MAX_WIDTH_INCHES * DPI pixels wide when built for it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(_RC):
        fig.savefig(path, dpi=DPI)


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {list(frame.columns)}")


def _explain(ax: Axes, text: str) -> None:
    """A panel that says why there is nothing to draw."""
    ax.text(0.5, 0.5, textwrap.fill(text, 48), ha="center", va="center", transform=ax.transAxes, color="#333333")
    ax.set_axis_off()


def _explanation_figure(text: str, height: float = 3.0) -> Figure:
    """A whole figure that says why there is nothing to draw (an empty table is not an error)."""
    fig = _new_figure(6.0, height)
    _explain(fig.subplots(), text)
    return fig


def _nan(value: Any) -> bool:
    """Missing or not a number (NaN, None, pd.NA, text)."""
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _backbone_order(values: Iterable[Any]) -> list[str]:
    """Backbones as they first appear, the average over backbones last."""
    seen = [str(v) for v in dict.fromkeys(values)]
    return [b for b in seen if b != ALL_BACKBONES] + ([ALL_BACKBONES] if ALL_BACKBONES in seen else [])


def _backbone_styles(backbones: Sequence[str]) -> dict[str, _Style]:
    return {b: _Style(COLOR_CYCLE[i % len(COLOR_CYCLE)], MARKERS[i % len(MARKERS)]) for i, b in enumerate(backbones)}


def _backbone_title(backbone: str) -> str:
    return "all backbones (averaged)" if backbone == ALL_BACKBONES else backbone


def _model_order(frame: pd.DataFrame) -> list[str]:
    """Models in Table 5's order (by kind, then as they first appear), as the scores tables list them."""
    models = list(dict.fromkeys(frame["model"]))
    if "kind" not in frame.columns:
        return models
    # A task averaged over the backbones keeps its own kind; prefer a per-backbone row's kind anyway.
    per_backbone = frame[frame["backbone"] != ALL_BACKBONES] if "backbone" in frame.columns else frame
    kind = dict(zip(frame["model"], frame["kind"], strict=True))
    kind |= dict(zip(per_backbone["model"], per_backbone["kind"], strict=True))
    order = kind_order()
    return sorted(models, key=lambda m: order.get(kind[m], max(order.values()) + 1))


# ----------------------------------------------------------------------------------------------------
# ROC curves


def _auc_label(model: str, row: pd.Series | None) -> str:
    if row is None or _nan(row.get("pooled_auc")):
        return f"{model}: pooled AUC n/a"
    text = f"{model}: AUC {row['pooled_auc']:.2f}"
    if not (_nan(row.get("pooled_ci_low")) or _nan(row.get("pooled_ci_high"))):
        text += f" [{row['pooled_ci_low']:.2f}, {row['pooled_ci_high']:.2f}]"
    return text


def _why_no_roc(auc_table: pd.DataFrame) -> str:
    """The scores' own reason for having no pooled predictions, or a generic one."""
    reasons: dict[str, int] = {}
    if "note" in auc_table.columns:
        for note in auc_table["note"].dropna().astype(str):
            for part in note.split("; "):
                if part and not part.startswith("fold "):  # per-fold notes do not explain pooling
                    reasons[part] = reasons.get(part, 0) + 1
    reason = max(reasons, key=reasons.__getitem__) if reasons else "roc.csv has no points"
    return f"No pooled out-of-fold ROC curves: {reason}."


@themed
def _roc_figure(roc: pd.DataFrame, auc_table: pd.DataFrame) -> Figure:
    if len(auc_table):
        _require(auc_table, ["model", "kind", "backbone", "pooled_auc", "pooled_ci_low", "pooled_ci_high"],
                 "auc_table")
    if roc.empty:
        return _explanation_figure(_why_no_roc(auc_table))
    _require(roc, ["model", "backbone", "fpr", "tpr"], "roc")

    shown = auc_table[(auc_table["model"] == REFERENCE) | (auc_table["kind"] == ENSEMBLE_KIND)] if len(auc_table) \
        else pd.DataFrame(columns=["model", "backbone"])
    backbones = _backbone_order([*shown["backbone"], *roc["backbone"]])
    models = _model_order(shown) if len(shown) else []
    # The same model keeps its style in every panel; the baseline is black and solid.
    others = [m for m in models if m != REFERENCE]
    styles = {m: _Style(COLOR_CYCLE[i % len(COLOR_CYCLE)], MARKERS[(i + 1) % len(MARKERS)],
                        LINE_STYLES[i % len(LINE_STYLES)]) for i, m in enumerate(others)}
    styles[REFERENCE] = _Style(OKABE_ITO["black"], MARKERS[0], "-")

    n_cols = 2 if len(backbones) == 4 else min(len(backbones), 3)
    n_rows = math.ceil(len(backbones) / n_cols)
    fig = _new_figure(3.3 * n_cols if n_cols > 1 else 5.5, (3.6 if n_cols > 1 else 5.6) * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[len(backbones):]:
        ax.set_axis_off()
    for ax, backbone in zip(axes, backbones, strict=False):
        rows = shown[shown["backbone"] == backbone].set_index("model")
        points = roc[roc["backbone"] == backbone]
        ax.plot([0, 1], [0, 1], color=NEUTRAL, linestyle="--", linewidth=0.8, label="_chance")
        drawn = 0
        for model in [m for m in models if m in rows.index]:
            curve = points[points["model"] == model].sort_values(["fpr", "tpr"], kind="stable")
            style = styles[model]
            # An empty line still gives the model its legend entry with "n/a".
            ax.plot(curve["fpr"], curve["tpr"], color=style.color, linestyle=style.linestyle, marker=style.marker,
                    markevery=0.1, markersize=4, linewidth=1.4, label=_auc_label(model, rows.loc[model]))
            drawn += len(curve) > 0
        if not drawn:
            ax.text(0.5, 0.55, "no pooled ROC curve for this backbone", ha="center", va="center",
                    transform=ax.transAxes, color="#333333")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate (1 − specificity)")
        ax.set_ylabel("true positive rate (sensitivity)")
        ax.set_title(_backbone_title(backbone))
        if len(rows):
            ax.legend(loc="lower right", title="pooled AUC [95 % CI]", title_fontsize=7.5, frameon=True)
    return fig


def roc_curves(roc: pd.DataFrame, auc_table: pd.DataFrame, path: str | Path) -> None:
    """One panel per backbone (the average over backbones last): the pooled out-of-fold ROC curves of the
    baseline and the ensembles, the legend giving each pooled AUC with its bootstrap CI.

    `roc`: roc.csv (model, backbone, fpr, tpr). `auc_table`: auc_table.csv in its long form, one row per
    (model, backbone). An empty `roc` (repeated hold-out: test sets overlap, nothing is pooled) gives one
    panel that says so, with the scores' note as the reason.
    """
    save_figure(_roc_figure(roc, auc_table), path)


# ----------------------------------------------------------------------------------------------------
# Forest plot


def _p_text(p: Any) -> str:
    if _nan(p):
        return "p_Holm = n/a"
    p = float(p)
    if p < 0.001:
        return "p_Holm < 0.001"
    return f"p_Holm = {p:.3f}" if p < 0.01 else f"p_Holm = {p:.2f}"


def _interval_columns(table: pd.DataFrame) -> tuple[str, str, str]:
    """The interval drawn: the adjusted one (consistent with Holm's p) where the table has it."""
    if {"adjusted_ci_low", "adjusted_ci_high"} <= set(table.columns) and table["adjusted_ci_low"].notna().any():
        return "adjusted_ci_low", "adjusted_ci_high", "Bonferroni-adjusted DeLong 95 % CI (consistent with Holm's p)"
    return "ci_low", "ci_high", "paired bootstrap 95 % CI (unadjusted)"


def _reference_groups(table: pd.DataFrame, controls: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """Panels of the forest plot: against the baseline, against the randomized control, the rest."""
    is_baseline = table["reference"] == REFERENCE
    is_control = table["reference"].isin(list(controls))
    groups = [("against the baseline", table[is_baseline]),
              ("against the randomized control (a gain here is the annotations')", table[is_control]),
              ("other pairs the kinds ask for", table[~is_baseline & ~is_control])]
    return [(title, part) for title, part in groups if len(part)]


@themed
def _forest_figure(comparisons: pd.DataFrame, controls: Sequence[str] = ()) -> Figure:
    if comparisons.empty:
        return _explanation_figure("No comparisons: no model shares a backbone with its reference.", height=2.5)
    _require(comparisons, ["model", "reference", "backbone", "difference", "ci_low", "ci_high", "holm_p"],
             "comparisons")
    pooled = "scope" in comparisons.columns and (comparisons["scope"] == "pooled").any()
    table = comparisons[comparisons["scope"] == "pooled"] if pooled else comparisons
    per_fold = not pooled and "scope" in table.columns
    low_column, high_column, interval_name = _interval_columns(table)
    backbones = _backbone_order(table["backbone"])
    styles = _backbone_styles(backbones)
    groups = _reference_groups(table, controls)

    values = table[["difference", low_column, high_column]].to_numpy(np.float64)
    finite = np.abs(values[np.isfinite(values)])
    # Symmetric about 0 so "which side of zero" is read at a glance.
    half = max(float(finite.max()) * 1.1 if finite.size else 0.0, 0.02)
    heights = [len(part) + (len(backbones) if len(backbones) > 1 else 0) + 0.6 for _, part in groups]
    fig = _new_figure(MAX_WIDTH_INCHES, 1.3 + 0.2 * sum(heights) + 0.35 * len(groups))
    axes = fig.subplots(len(groups), 1, squeeze=False, height_ratios=heights, sharex=True)[:, 0]
    for ax, (title, part) in zip(axes, groups, strict=True):
        labels: list[str] = []
        p_labels: list[str] = []
        headers: dict[int, str] = {}
        entries: list[tuple[int, pd.Series]] = []
        for backbone in backbones:
            rows = part[part["backbone"] == backbone]
            if rows.empty:
                continue
            if len(backbones) > 1:
                headers[len(labels)] = backbone
                labels.append(_backbone_title(backbone))
                p_labels.append("")
            for _, row in rows.iterrows():
                label = str(row["model"]) if title == "against the baseline" or row["reference"] in controls \
                    else f"{row['model']} vs {row['reference']}"
                if per_fold:
                    label += f" ({row['scope']})"
                entries.append((len(labels), row))
                labels.append(label)
                p_labels.append(_p_text(row["holm_p"]))
        ax.axvline(0, color=OKABE_ITO["black"], linewidth=0.9)
        for y, row in entries:
            style = styles[str(row["backbone"])]
            if _nan(row["difference"]):
                ax.text(0, y, "n/a", ha="center", va="center", fontsize=8, color="#333333",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
                continue
            low, high = row[low_column], row[high_column]
            clears = not (_nan(low) or _nan(high)) and (low > 0 or high < 0)
            if not (_nan(low) or _nan(high)):
                ax.hlines(y, low, high, color=style.color, linewidth=1.8)
            # Filled: the interval clears 0 (and Holm p < 0.05); hollow: it does not.
            ax.plot([row["difference"]], [y], marker=style.marker, color=style.color, markersize=6, linestyle="none",
                    markerfacecolor=style.color if clears else "white", markeredgewidth=1.3)
        ax.set_xlim(-half, half)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_yticks(range(len(labels)), labels)
        ax.tick_params(axis="y", length=0)
        for index, tick in enumerate(ax.get_yticklabels()):
            if index in headers:
                tick.set_fontweight("bold")
                tick.set_color(styles[headers[index]].color)
        ax.set_title(title, loc="left", fontsize=9.5)
        # The p-values as a right-hand column of tick labels: the layout engine makes room for them.
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        right.set_yticks(range(len(labels)), p_labels)
        right.tick_params(axis="y", length=0)
        right.spines["right"].set_visible(False)
    axes[-1].set_xlabel(f"← reference better · AUC difference (model − reference) · model better →\n{interval_name}")
    scope = "pooled out-of-fold predictions" if pooled else "per fold"
    fig.suptitle(f"AUC difference against the reference ({scope}); filled: interval clear of 0", x=0.01, ha="left",
                 fontsize=10)
    return fig


def forest_plot(comparisons: pd.DataFrame, path: str | Path, controls: Sequence[str] = ()) -> None:
    """One row per comparison (model vs reference), a panel per kind of reference (the baseline, the
    randomized control `controls`, the pairs kinds ask for), coloured by backbone: the AUC difference
    with its adjusted interval (comparisons.csv's `adjusted_ci_*`, consistent with Holm's p; the
    bootstrap CI where a table lacks them) and, in a right-hand column, the Holm-adjusted DeLong p.

    `comparisons`: comparisons.csv. The pooled rows are drawn when there are any, otherwise the per-fold
    rows (labelled with their fold). A row without a difference shows "n/a" and no point.
    """
    save_figure(_forest_figure(comparisons, controls), path)


# ----------------------------------------------------------------------------------------------------
# Per-fold AUC


@themed
def _fold_auc_figure(auc_folds: pd.DataFrame) -> Figure:
    if len(auc_folds):
        _require(auc_folds, ["model", "backbone", "fold", "auc"], "auc_folds")
    defined = auc_folds[auc_folds["auc"].notna()] if len(auc_folds) else auc_folds
    missing = len(auc_folds) - len(defined)
    if defined.empty:
        why = f"all {missing} fold AUCs are undefined (a test set with one class only)" if missing \
            else "auc_folds.csv has no rows"
        return _explanation_figure(f"No per-fold AUC to show: {why}.")

    models = _model_order(auc_folds)
    backbones = _backbone_order(auc_folds["backbone"])
    styles = _backbone_styles(backbones)
    slot = 0.8 / len(backbones)
    # Many models wrap onto several rows of panels instead of one unreadably wide strip.
    model_width = 0.3 * len(backbones) + 0.4
    per_row = max(1, min(len(models), int((MAX_WIDTH_INCHES - 2.4) // model_width)))
    per_row = math.ceil(len(models) / math.ceil(len(models) / per_row))  # rows of even length
    rows = [models[i:i + per_row] for i in range(0, len(models), per_row)]
    fig = _new_figure(max(6.0, model_width * per_row + 2.8), 0.6 + 3.6 * len(rows))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    # Fitted to the data (every row the same, so a model's place compares across rows): on [0, 1] the
    # models' 0.84-0.95 would be one smudge. Chance is drawn only when the data come near it.
    low, high = float(defined["auc"].min()), float(defined["auc"].max())
    pad = max((high - low) * 0.08, 0.01)
    y_limits = (max(0.0, low - pad), min(1.0, high + pad))
    for ax, row_models in zip(axes, rows, strict=True):
        if y_limits[0] <= 0.5:
            ax.axhline(0.5, color=NEUTRAL, linestyle=":", linewidth=1.0)
        for b, backbone in enumerate(backbones):
            style = styles[backbone]
            for x, model in enumerate(row_models):
                part = defined[(defined["model"] == model) & (defined["backbone"] == backbone)].sort_values("fold")
                if part.empty:
                    continue
                centre = x - 0.4 + slot * (b + 0.5)
                # Deterministic jitter: the folds spread evenly across the slot, so no two dots coincide in x.
                spread = np.linspace(-0.3, 0.3, len(part)) * slot if len(part) > 1 else np.zeros(1)
                ax.scatter(centre + spread, part["auc"], s=26, color=style.color, marker=style.marker,
                           edgecolors="white", linewidths=0.5, zorder=3)
                ax.hlines(part["auc"].mean(), centre - 0.4 * slot, centre + 0.4 * slot, color=style.color,
                          linewidth=2.2, zorder=2)
        # Every row keeps the first row's scale, so a model's place is comparable across rows.
        ax.set_xlim(-0.6, per_row - 0.4)
        ax.set_ylim(*y_limits)
        ax.set_xticks(range(len(row_models)), row_models, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_ylabel("test AUC")
    fig.suptitle("Test AUC per fold", x=0.02, ha="left")
    fitted = f"; axis fitted to the data ({y_limits[0]:.2f}–{y_limits[1]:.2f})"
    subtitle = "dots: folds; bar: mean over folds" + ("; dotted: chance (0.5)" if y_limits[0] <= 0.5 else fitted)
    if missing:
        subtitle += f"\n{missing} fold AUC{'s' if missing > 1 else ''} undefined (one class in the test set) left out"
    axes[0].set_title(subtitle, loc="left", fontsize=7.5, color="#555555")
    handles = [Line2D([], [], color=styles[b].color, marker=styles[b].marker, linestyle="none",
                      label=_backbone_title(b)) for b in backbones]
    # Outside the axes: a legend inside would hide the dots of a model near AUC 0 or 1.
    axes[0].legend(handles=handles, title="backbone", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def fold_auc_dots(auc_folds: pd.DataFrame, path: str | Path) -> None:
    """Test AUC of every fold per model (x) and backbone (colour and marker), the mean over folds as a
    short bar, on an axis fitted to the data (chance, 0.5, dotted when the axis reaches it).

    `auc_folds`: auc_folds.csv. Undefined AUCs (NaN: one class in the test set) are left out, and the
    subtitle counts them.
    """
    save_figure(_fold_auc_figure(auc_folds), path)


# ----------------------------------------------------------------------------------------------------
# Training curves


def _short_task(task: str, kind: str) -> str:
    return task.removeprefix(f"{kind}-") if task != kind else ""


def _epoch_axis(ax: Axes, epochs: Sequence[Any]) -> None:
    if len(epochs) == 1:
        # matplotlib would widen a single epoch to fractional ticks around it.
        ax.set_xlim(float(epochs[0]) - 1, float(epochs[0]) + 1)
        ax.set_xticks([epochs[0]])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _family(kind: str) -> str:
    """A row of the training figure: kinds sharing their first word (crowdsim-retrain, crowdsim-soft,
    crowdsim-incremental) share a row, so a family's variants are compared on one axis."""
    return kind.split("-", 1)[0]


def overfitting_note(line: pd.DataFrame, *, rise: float = 0.1) -> str:
    """"val. loss rises after epoch k" when the last epoch's validation loss exceeds its minimum by
    more than `rise` (relative) while the training loss went on falling: the model fits its training
    data better and the held-out data worse, and the last epoch's weights are the ones tested."""
    if not {"loss", "val_loss"} <= set(line.columns):
        return ""
    ordered = line.dropna(subset=["val_loss", "loss"]).sort_values("epoch")
    if len(ordered) < 3:
        return ""
    best = int(ordered["val_loss"].to_numpy().argmin())
    last_val, best_val = float(ordered["val_loss"].iloc[-1]), float(ordered["val_loss"].iloc[best])
    falling_train = float(ordered["loss"].iloc[-1]) < float(ordered["loss"].iloc[best])
    if best < len(ordered) - 1 and last_val > best_val * (1 + rise) and falling_train:
        return f"val. loss rises after epoch {ordered['epoch'].iloc[best]:g}"
    return ""


@themed
def _training_figure(histories: pd.DataFrame) -> Figure:
    if histories.empty:
        return _explanation_figure("No training histories to show.")
    _require(histories, ["task", "kind", "backbone", "epoch"], "histories")
    present = list(dict.fromkeys(histories["kind"].astype(str)))
    known = _training_families()
    kinds = [k for k in known if k in present] + [k for k in present if k not in known]
    families = list(dict.fromkeys(_family(k) for k in kinds))
    backbones = _backbone_order(histories["backbone"])
    metrics = [c for c in ("loss", "val_loss", "val_auc") if c in histories.columns]
    # Folds that stopped early leave later epochs averaged over fewer folds.
    mean = (histories.groupby(["kind", "task", "backbone", "epoch"], sort=False)[metrics].mean().reset_index()
            if metrics else histories[["kind", "task", "backbone", "epoch"]].drop_duplicates())
    mean["family"] = mean["kind"].astype(str).map(_family)
    has_loss_column = any(c in mean for c in ("loss", "val_loss"))

    fig = _new_figure(MAX_WIDTH_INCHES, 0.5 + 2.6 * len(families))
    axes = fig.subplots(len(families), 2, squeeze=False)
    # One scale per column: losses and AUCs compare across families at a glance.
    loss_values = mean[[c for c in ("loss", "val_loss") if c in mean]].to_numpy(np.float64) if has_loss_column \
        else np.empty(0)
    loss_values = loss_values[np.isfinite(loss_values)]
    auc_values = mean["val_auc"].to_numpy(np.float64) if "val_auc" in mean else np.empty(0)
    auc_values = auc_values[np.isfinite(auc_values)]
    epochs_all = sorted(mean["epoch"].dropna().unique())
    for row, family in enumerate(families):
        loss_ax, auc_ax = axes[row][0], axes[row][1]
        part = mean[mean["family"] == family]
        lines = list(part.groupby(["task", "backbone"], sort=False))
        notes = []
        for index, ((task, backbone), line) in enumerate(lines):
            line = line.sort_values("epoch")
            style = _Style(COLOR_CYCLE[index % len(COLOR_CYCLE)], MARKERS[index % len(MARKERS)])
            # Markers keep a one-epoch history visible and tell lines apart without colour.
            common = {"color": style.color, "marker": style.marker, "markersize": 4, "linewidth": 1.3,
                      "markevery": max(1, len(line) // 10)}
            name = str(task) + (f" · {backbone}" if len(backbones) > 1 else "")
            for column, linestyle in (("loss", "-"), ("val_loss", "--")):
                if column in line and line[column].notna().any():
                    loss_ax.plot(line["epoch"], line[column], linestyle=linestyle, **common)
            if "val_auc" in line and line["val_auc"].notna().any():
                auc_ax.plot(line["epoch"], line["val_auc"], linestyle="-", label=name, **common)
            note = overfitting_note(line)
            if note:
                notes.append(f"{name}: {note}")
        loss_ax.set_title(f"{family} · loss", loc="left", fontsize=9.5, fontweight="bold")
        auc_ax.set_title(f"{family} · validation AUC", loc="left", fontsize=9.5, fontweight="bold")
        if loss_values.size:
            loss_ax.set_ylim(0, float(loss_values.max()) * 1.05)
            loss_ax.set_ylabel("loss")
            _epoch_axis(loss_ax, epochs_all)
        else:
            _explain(loss_ax, "no loss recorded in the histories")
        if notes:
            # Beside the panels, under the legend: inside, the note would cover the curves it names.
            auc_ax.text(1.03, 0.0, "overfitting:\n" + "\n".join(notes[:4]) + ("\n…" if len(notes) > 4 else ""),
                        transform=auc_ax.transAxes, ha="left", va="bottom", fontsize=7, color=OKABE_ITO["vermillion"])
        if auc_values.size:
            low = min(float(auc_values.min()), 0.5)
            auc_ax.set_ylim(max(0.0, low - 0.02), min(1.0, float(auc_values.max()) + 0.02))
            auc_ax.axhline(0.5, color=NEUTRAL, linestyle=":", linewidth=1.0)
            auc_ax.set_ylabel("AUC")
            _epoch_axis(auc_ax, epochs_all)
            auc_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.02), fontsize=7, frameon=False,
                          ncols=1 if len(lines) <= 5 else 2)
        else:
            _explain(auc_ax, "no validation AUC recorded in the histories")
    fig.suptitle("Training per task family: loss (train solid, validation dashed) and validation AUC, the mean "
                 "over the folds", x=0.01, ha="left", fontsize=10)
    axes[-1][0].set_xlabel("epoch (mean over folds)")
    axes[-1][1].set_xlabel("epoch (mean over folds)")
    return fig


def training_curves(histories: pd.DataFrame, path: str | Path) -> None:
    """One row per task family (baseline, multitask, multihead, disagreement, random, crowdsim: kinds
    sharing their first word), those present: loss per epoch (train solid, validation dashed) left,
    validation AUC right, on one scale per column; one line per (task, backbone), the mean over its
    folds, each in its own colour and marker. A line whose validation loss rises while its training
    loss falls is named in its panel (overfitting).

    `histories`: the history.csv files concatenated, with columns task, kind, backbone and fold added.
    A missing loss or val_auc column gives a panel saying so.
    """
    save_figure(_training_figure(histories), path)


# ----------------------------------------------------------------------------------------------------
# MTurk funnel


def _text(value: Any) -> str:
    return "" if value is None or (np.ndim(value) == 0 and pd.isna(value)) else str(value)


def _step_label(row: pd.Series) -> str:
    rule = _text(row.get("rule")).replace("_", " ")
    description = _text(row.get("description"))
    if not rule and not description:
        return f"step {_text(row.get('step')) or '?'}"
    text = f"{rule}: {description}" if rule and description and description != rule else rule or description
    return textwrap.fill(text, 34)


@themed
def _funnel_figure(funnel: pd.DataFrame) -> Figure:
    if funnel.empty:
        return _explanation_figure("No MTurk funnel: the table has no steps.")
    _require(funnel, ["assignments"], "funnel")
    if "rule" not in funnel.columns and "description" not in funnel.columns:
        raise ValueError("funnel needs a rule or a description column to name its steps")
    table = funnel.sort_values("step", kind="stable") if "step" in funnel.columns else funnel
    table = table.reset_index(drop=True)
    x = np.arange(len(table))
    fig = _new_figure(max(6.5, 1.25 * len(table) + 2.0), 5.2)
    ax = fig.subplots()
    bars = ax.bar(x, table["assignments"].astype(float), color=OKABE_ITO["sky blue"], edgecolor=OKABE_ITO["blue"],
                  hatch="//", linewidth=0.8, label="assignments left")
    counts = [f"{int(n):,}" if not _nan(n) else "" for n in table["assignments"]]
    if "removed" in table.columns:
        counts = [c + (f"\n(−{int(r):,})" if not _nan(r) and r else "") for c, r in zip(counts, table["removed"],
                                                                                     strict=True)]
    ax.bar_label(bars, labels=counts, fontsize=7.5, padding=2)
    # The bars take the lower ~60 % of the height, the accuracy line the band above them, so the
    # counts written on the bars never sit under the line.
    ax.set_ylim(0, float(np.nanmax(table["assignments"].astype(float))) * 1.7 or 1.0)
    ax.set_xticks(x, [_step_label(row) for _, row in table.iterrows()], rotation=30, ha="right",
                  rotation_mode="anchor", fontsize=7)
    ax.set_ylabel("assignments left after the step")
    ax.set_title("MTurk filtering funnel")

    handles: list[Any] = [bars]
    accuracy_columns = [(c, label, style) for c, label, style in
                        (("accuracy", "accuracy of the answers left", ("-", "o", OKABE_ITO["vermillion"])),
                         ("accuracy_possible_triplets", "accuracy on possible triplets",
                          ("--", "s", OKABE_ITO["black"])))
                        if c in table.columns and table[c].notna().any()]
    if accuracy_columns:
        right = ax.twinx()
        right.spines["right"].set_visible(True)
        percent = np.concatenate([table[c].astype(float).to_numpy() * 100 for c, _, _ in accuracy_columns])
        low, high = float(np.nanmin(percent)), float(np.nanmax(percent))
        span = max(high - low, 2.0)
        for column, label, (linestyle, marker, color) in accuracy_columns:
            (line,) = right.plot(x, table[column].astype(float) * 100, linestyle=linestyle, marker=marker,
                                 color=color, markersize=5, linewidth=1.5, label=label)
            handles.append(line)
        right.set_ylabel("accuracy (%)")
        right.yaxis.set_major_formatter(PercentFormatter(xmax=100))
        right.set_ylim(low - 2.4 * span, high + 0.25 * span)
        # The band's lower limit can fall below 0 %; no tick may claim an impossible accuracy.
        right.set_yticks([t for t in right.get_yticks() if 0 <= t <= 100])
        right.set_ylim(low - 2.4 * span, high + 0.25 * span)
    # Below the step labels, where neither the bars nor the accuracy line can run under it.
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return fig


def funnel_chart(funnel: pd.DataFrame, path: str | Path) -> None:
    """The MTurk filtering funnel: bars of the assignments left after each step (annotated with the count
    and what the step removed), and on a second axis the accuracy of the answers left, in %.

    `funnel`: mturk_funnel.csv (step, rule, description, removed, assignments, ..., accuracy as a fraction).
    """
    save_figure(_funnel_figure(funnel), path)

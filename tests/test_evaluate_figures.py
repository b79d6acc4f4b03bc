"""Evaluation figures (crowdskin.evaluate.figures) on hand-made tables: the PNGs are written and not blank,
and the legends and labels say what the tables hold, edge cases included."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from crowdskin.evaluate import figures
from crowdskin.evaluate.figures import (
    _fold_auc_figure,
    _forest_figure,
    _funnel_figure,
    _roc_figure,
    _training_figure,
    fold_auc_dots,
    forest_plot,
    funnel_chart,
    overfitting_note,
    roc_curves,
    training_curves,
)

BACKBONES = ["vgg16", "resnet50", "all"]
ENSEMBLES = ["ensemble-crowd", "ensemble-student"]
NAN = math.nan

# --- hand-made tables in the layouts of results/scores, results/train and results/crowd ----------------


def auc_table() -> pd.DataFrame:
    rows = []
    for backbone in BACKBONES:
        # Averaged over backbones, the baseline keeps its own kind.
        rows.append({"model": "baseline", "kind": "baseline", "source": "", "backbone": backbone})
        rows.append({"model": "multitask-crowd-color", "kind": "multitask", "source": "crowd", "backbone": backbone})
        for model in ENSEMBLES:
            rows.append({"model": model, "kind": "ensemble", "source": model.split("-")[1], "backbone": backbone})
    table = pd.DataFrame(rows)
    table["n_folds"] = 3
    table["mean_auc"] = np.linspace(0.6, 0.8, len(table))
    table["sd_auc"] = 0.05
    table["pooled_auc"] = np.linspace(0.62, 0.82, len(table))
    table["pooled_ci_low"] = table["pooled_auc"] - 0.06
    table["pooled_ci_high"] = table["pooled_auc"] + 0.06
    first = (table["model"] == "baseline") & (table["backbone"] == "vgg16")
    table.loc[first, ["pooled_auc", "pooled_ci_low", "pooled_ci_high"]] = [0.71, 0.65, 0.78]
    table["n_pooled"] = 30
    table["note"] = ""
    return table


def roc_points(table: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for row in table.itertuples():
        fpr = np.array([0.0, 0.0, 0.2, 0.5, 1.0])
        tpr = np.clip(np.array([0.0, 0.3, 0.6, 0.8, 1.0]) + 0.02 * (row.Index % 5), 0, 1)
        frames.append(pd.DataFrame({"model": row.model, "backbone": row.backbone, "fpr": fpr, "tpr": tpr}))
    return pd.concat(frames, ignore_index=True)


def comparisons() -> pd.DataFrame:
    rows = []
    for backbone in BACKBONES:
        for j, model in enumerate(["multitask-crowd-color", *ENSEMBLES]):
            diff = 0.02 * (j - 1)
            rows.append({"model": model, "reference": "baseline", "backbone": backbone, "scope": "pooled",
                         "n_test": 30, "n_abnormal": 10, "auc_model": 0.7 + diff, "auc_reference": 0.7,
                         "difference": diff, "ci_low": diff - 0.05, "ci_high": diff + 0.05, "delong_z": 1.0,
                         "delong_p": 0.01 * (j + 1), "holm_p": 0.03 * (j + 1), "note": ""})
    return pd.DataFrame(rows)


def auc_folds() -> pd.DataFrame:
    rows = []
    for backbone in BACKBONES:
        kinds = {"baseline": "baseline", "multitask-crowd-color": "multitask"} | dict.fromkeys(ENSEMBLES, "ensemble")
        for m, (model, kind) in enumerate(kinds.items()):
            for fold in range(3):
                rows.append({"model": model, "kind": kind, "source": "", "backbone": backbone, "fold": fold,
                             "auc": 0.55 + 0.05 * m + 0.03 * fold, "n_test": 10, "n_abnormal": 3, "note": ""})
    return pd.DataFrame(rows)


def histories() -> pd.DataFrame:
    frames = []
    for task, kind, epochs in (("baseline", "baseline", 3), ("multitask-crowd-color", "multitask", 3),
                               ("crowdsim-retrain", "crowdsim-retrain", 1)):
        for backbone in ("vgg16", "resnet50"):
            for fold in range(3):
                epoch = np.arange(1, epochs + 1)
                frames.append(pd.DataFrame({
                    "epoch": epoch, "loss": 1.0 / epoch + 0.01 * fold, "val_loss": 1.1 / epoch + 0.02 * fold,
                    "auc": 0.6 + 0.05 * epoch, "val_auc": 0.55 + 0.04 * epoch + 0.01 * fold
                    + (0.05 if backbone == "vgg16" else 0),
                    "task": task, "kind": kind, "backbone": backbone, "fold": fold,
                }))
    return pd.concat(frames, ignore_index=True)


def funnel() -> pd.DataFrame:
    return pd.DataFrame({
        "step": [0, 1, 2, 3], "rule": ["exported", "no_choice", "impossible_triplet", "time_on_task"],
        "description": ["all assignments in the MTurk exports", "quarantined at ingest: no A/B choice recorded",
                        "both candidates carry the same diagnosis", "first HIT < 60 s, later HIT < 10 s or > 200 s"],
        "removed": [0, 120, 40, 35], "assignments": [1000, 880, 840, 805], "workers": [50, 45, 45, 44],
        "workers_unknown": [0, 0, 0, 0], "hits": [300, 280, 280, 279], "answered": [880, 880, 840, 805],
        "accuracy": [NAN, 0.61, 0.64, 0.66], "accuracy_possible_triplets": [NAN, 0.64, 0.64, 0.665],
    })


def assert_png(path: Path, *, min_width: int = 600, min_height: int = 300) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0
    pixels = imread(path)
    height, width = pixels.shape[:2]
    assert width >= min_width and height >= min_height, (width, height)
    # the report shows a figure at its own size up to about 1150 px: a wider one is scaled down
    assert width <= 1000, width
    assert pixels[..., :3].std() > 0.01, "blank image"
    return pixels


def legend_texts(fig: Figure, index: int | None) -> list[str]:
    """The texts of axes `index`'s legend, or of the figure's legend when `index` is None."""
    legend = fig.legends[0] if index is None else fig.axes[index].get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def all_text(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_visible()))


def tick_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


# --- palette ------------------------------------------------------------------------------------------


def test_palette_is_okabe_ito_and_every_cycle_colour_comes_from_it():
    assert set(figures.OKABE_ITO.values()) == {"#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2",
                                                "#D55E00", "#CC79A7"}
    assert set(figures.COLOR_CYCLE) <= set(figures.OKABE_ITO.values())
    assert len(set(figures.MARKERS)) == len(figures.MARKERS) >= len(figures.COLOR_CYCLE)


def test_the_module_imports_no_tensorflow_mlflow_or_sklearn():
    import subprocess
    import sys

    code = ("import sys, crowdskin.evaluate.figures; "
            "print(sorted(m for m in ('tensorflow', 'mlflow', 'sklearn', 'matplotlib.pyplot') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- ROC ----------------------------------------------------------------------------------------------


def test_roc_panels_per_backbone_with_baseline_and_ensembles_in_the_legend(tmp_path):
    table = auc_table()
    fig = _roc_figure(roc_points(table), table)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.axison]
    assert titles == ["vgg16", "resnet50", "all backbones (averaged)"]
    vgg = legend_texts(fig, 0)
    assert vgg[0] == "baseline: AUC 0.71 [0.65, 0.78]"
    assert [t.split(":")[0] for t in vgg] == ["baseline", *ENSEMBLES]  # single multitask models are not drawn
    assert all(t.split(":")[0] in {"baseline", *ENSEMBLES} for t in legend_texts(fig, 2))
    ax = fig.axes[0]
    assert ax.get_aspect() == 1.0
    chance = [line for line in ax.get_lines() if line.get_label() == "_chance"]
    assert len(chance) == 1 and chance[0].get_linestyle() == "--"
    # The same model keeps one style in every panel.
    styles = [{line.get_label().split(":")[0]: (line.get_color(), line.get_marker()) for line in a.get_lines()}
              for a in fig.axes[:3]]
    assert styles[0]["ensemble-crowd"] == styles[1]["ensemble-crowd"] == styles[2]["ensemble-crowd"]
    assert len({styles[0][m] for m in ["baseline", *ENSEMBLES]}) == 3

    roc_curves(roc_points(table), table, tmp_path / "out" / "roc.png")
    assert_png(tmp_path / "out" / "roc.png")


def test_roc_legend_says_na_for_a_missing_pooled_auc_and_omits_a_missing_ci():
    table = auc_table()
    baseline_resnet = (table["model"] == "baseline") & (table["backbone"] == "resnet50")
    table.loc[baseline_resnet, "pooled_auc"] = NAN
    table.loc[table["model"] == "ensemble-crowd", ["pooled_ci_low", "pooled_ci_high"]] = NAN
    roc = roc_points(table)
    roc = roc[~((roc["model"] == "baseline") & (roc["backbone"] == "resnet50"))]
    texts = legend_texts(_roc_figure(roc, table), 1)
    assert "baseline: pooled AUC n/a" in texts
    assert any(t.startswith("ensemble-crowd: AUC ") and "[" not in t for t in texts)


def test_empty_roc_draws_one_panel_with_the_scores_reason(tmp_path):
    table = auc_table()
    table[["pooled_auc", "pooled_ci_low", "pooled_ci_high"]] = NAN
    table["note"] = "fold 2: test set has one class only (5 normal); split.scheme repeated_holdout: test sets overlap"
    empty = pd.DataFrame(columns=["model", "backbone", "fpr", "tpr"])
    fig = _roc_figure(empty, table)
    assert len(fig.axes) == 1
    text = all_text(fig).replace("\n", " ")
    assert "No pooled out-of-fold ROC curves" in text and "repeated_holdout" in text and "fold 2" not in text

    roc_curves(empty, table, tmp_path / "roc.png")
    assert_png(tmp_path / "roc.png", min_width=400, min_height=200)
    # Even without any table, the figure explains instead of raising.
    roc_curves(pd.DataFrame(), pd.DataFrame(), tmp_path / "bare.png")
    assert_png(tmp_path / "bare.png", min_width=400, min_height=200)


def test_roc_refuses_a_table_without_the_pooled_columns():
    table = auc_table().drop(columns=["pooled_ci_low"])
    with pytest.raises(ValueError, match="pooled_ci_low"):
        _roc_figure(roc_points(table), table)


# --- forest plot --------------------------------------------------------------------------------------


def test_forest_rows_are_grouped_by_backbone_with_holm_p_and_na_rows(tmp_path):
    table = comparisons()
    table.loc[4, ["difference", "ci_low", "ci_high", "delong_p", "holm_p"]] = NAN  # resnet50 ensemble-crowd
    # Per-fold rows are ignored while pooled rows exist.
    table = pd.concat([table, table.assign(scope="fold0", model="ghost")], ignore_index=True)
    fig = _forest_figure(table)
    ax, right = fig.axes[0], fig.axes[1]
    labels = tick_texts(ax)
    assert labels[:4] == ["vgg16", "multitask-crowd-color", "ensemble-crowd", "ensemble-student"]
    assert labels[4] == "resnet50" and labels[8] == "all backbones (averaged)"
    assert len(labels) == 12 and not any("ghost" in label for label in labels)
    p = tick_texts(right)
    assert p[1:4] == ["p_Holm = 0.03", "p_Holm = 0.06", "p_Holm = 0.09"]
    assert p[6] == "p_Holm = n/a" and p[0] == ""
    na = [t for t in ax.texts if t.get_text() == "n/a"]
    assert len(na) == 1 and na[0].get_position()[1] == 6
    points = [line for line in ax.get_lines() if line.get_marker() not in (None, "None", "")]
    assert len(points) == 8  # 9 comparisons, one without a difference
    assert ax.get_xlim()[0] == pytest.approx(-ax.get_xlim()[1])
    assert 0 in [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "-"]

    forest_plot(table, tmp_path / "forest.png")
    assert_png(tmp_path / "forest.png")


def test_forest_height_grows_with_rows_and_falls_back_to_fold_rows():
    table = comparisons()
    small = _forest_figure(table[table["backbone"] == "vgg16"])
    large = _forest_figure(table)
    assert large.get_figheight() > small.get_figheight()
    folds = pd.concat([table.assign(scope=f"fold{k}") for k in range(2)], ignore_index=True)
    labels = tick_texts(_forest_figure(folds).axes[0])
    assert "ensemble-crowd (fold1)" in labels


def test_forest_has_a_panel_against_the_control_and_draws_the_adjusted_interval():
    """The randomized control's comparisons get their own panel; the bar is the adjusted interval
    (filled marker only where it clears 0), not the unadjusted bootstrap one."""
    table = comparisons()
    table["adjusted_ci_low"] = table["difference"] - 0.1
    table["adjusted_ci_high"] = table["difference"] + 0.1
    table.loc[0, ["difference", "adjusted_ci_low", "adjusted_ci_high"]] = [0.2, 0.12, 0.28]
    control = table.assign(reference="random", difference=table["difference"] - 0.01)
    other = table.iloc[:1].assign(model="multihead-crowd", reference="ensemble-crowd")
    fig = _forest_figure(pd.concat([table, control, other], ignore_index=True), controls=["random"])
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert titles == ["against the baseline", "against the randomized control (a gain here is the annotations')",
                      "other pairs the kinds ask for"]
    first = fig.axes[0]
    bars = [c for c in first.collections if len(c.get_segments())]
    spans = sorted(float(seg[1][0] - seg[0][0]) for c in bars for seg in c.get_segments())
    # the bootstrap intervals span 0.1: none of them is drawn
    assert spans == pytest.approx([0.16] + [0.2] * (len(spans) - 1))
    points = [line for line in first.get_lines() if line.get_marker() not in (None, "None", "")]
    filled = [line for line in points if line.get_markerfacecolor() != "white"]
    assert len(filled) == 1 and filled[0].get_xdata()[0] == pytest.approx(0.2)
    assert "Bonferroni-adjusted" in all_text(fig)


def test_forest_of_no_comparison_explains(tmp_path):
    forest_plot(comparisons().iloc[0:0], tmp_path / "forest.png")
    assert_png(tmp_path / "forest.png", min_width=400, min_height=150)


# --- per-fold AUC -------------------------------------------------------------------------------------


def test_fold_dots_leave_out_nan_aucs_and_count_them(tmp_path):
    table = auc_folds()
    table.loc[0, ["auc", "note"]] = [NAN, "test set has one class only (5 normal)"]
    fig = _fold_auc_figure(table)
    ax = fig.axes[0]
    defined = table["auc"].dropna()
    # fitted to the data, not [0, 1]
    assert 0 < ax.get_ylim()[0] <= defined.min() and defined.max() <= ax.get_ylim()[1] < 1
    assert "1 fold AUC undefined" in all_text(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["baseline", "multitask-crowd-color", *ENSEMBLES]
    dots = sum(len(c.get_offsets()) for c in ax.collections if c.get_offsets().shape[1] == 2
               and hasattr(c, "get_sizes") and len(c.get_sizes()))
    assert dots == len(table) - 1
    assert not any(line.get_linestyle() == ":" for line in ax.get_lines()), "chance is off this axis"
    low = _fold_auc_figure(table.assign(auc=table["auc"] - 0.2)).axes[0]
    assert any(line.get_ydata()[0] == 0.5 and line.get_linestyle() == ":" for line in low.get_lines())
    assert legend_texts(fig, 0) == ["vgg16", "resnet50", "all backbones (averaged)"]

    fold_auc_dots(table, tmp_path / "folds.png")
    first = assert_png(tmp_path / "folds.png")
    fold_auc_dots(table, tmp_path / "again.png")
    assert np.array_equal(first, imread(tmp_path / "again.png")), "jitter must be deterministic"


def test_fold_dots_with_every_auc_undefined_explain(tmp_path):
    table = auc_folds().assign(auc=NAN)
    fig = _fold_auc_figure(table)
    assert "all 36 fold AUCs are undefined" in all_text(fig).replace("\n", " ")
    fold_auc_dots(table, tmp_path / "folds.png")
    assert_png(tmp_path / "folds.png", min_width=400, min_height=200)


# --- training curves ----------------------------------------------------------------------------------


def test_training_curves_one_row_per_family_on_shared_scales(tmp_path):
    frame = histories()
    extra = frame[frame["task"] == "crowdsim-retrain"].assign(task="crowdsim-incremental", kind="crowdsim-incremental")
    frame = pd.concat([frame, extra], ignore_index=True)
    fig = _training_figure(frame)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles[::2] == ["baseline · loss", "multitask · loss", "crowdsim · loss"]
    loss_ax, auc_ax = fig.axes[0], fig.axes[1]
    styles = sorted(line.get_linestyle() for line in loss_ax.get_lines())
    assert styles == ["-", "-", "--", "--"]  # train and validation for two backbones
    # every loss panel on one scale, every AUC panel on another
    assert len({ax.get_ylim() for ax in fig.axes[::2]}) == 1 and len({ax.get_ylim() for ax in fig.axes[1::2]}) == 1
    # the crowdsim row holds both variants, each line its own colour and marker
    crowd = [line for line in fig.axes[5].get_lines() if line.get_label().startswith("crowdsim")]
    assert {line.get_label() for line in crowd} == {"crowdsim-retrain · vgg16", "crowdsim-retrain · resnet50",
                                                    "crowdsim-incremental · vgg16", "crowdsim-incremental · resnet50"}
    assert len({(line.get_color(), line.get_marker()) for line in crowd}) == 4
    # The mean over the folds, per epoch.
    vgg = next(line for line in auc_ax.get_lines() if line.get_label() == "baseline · vgg16")
    expected = frame[(frame["task"] == "baseline") & (frame["backbone"] == "vgg16")].groupby("epoch")["val_auc"]
    assert np.allclose(vgg.get_ydata(), expected.mean().to_numpy())
    single = [line for line in crowd if len(line.get_xdata()) == 1]
    assert single and all(line.get_marker() not in (None, "None", "") for line in single)

    training_curves(frame, tmp_path / "training.png")
    assert_png(tmp_path / "training.png")


def test_training_curves_name_a_line_whose_validation_loss_rises():
    epochs = np.arange(1, 7)
    rising = pd.DataFrame({"epoch": epochs, "loss": 1.0 / epochs, "val_loss": [0.5, 0.45, 0.5, 0.6, 0.7, 0.8]})
    assert overfitting_note(rising) == "val. loss rises after epoch 2"
    steady = rising.assign(val_loss=1.1 / epochs)
    assert overfitting_note(steady) == ""
    frame = histories()
    frame.loc[frame["task"] == "baseline", "val_loss"] = frame.loc[frame["task"] == "baseline", "epoch"] * 0.5
    assert "overfitting" in all_text(_training_figure(frame))
    assert "overfitting" not in all_text(_training_figure(histories()))


def test_training_curves_without_val_auc_or_losses_explain_per_panel(tmp_path):
    fig = _training_figure(histories().drop(columns=["val_auc"]))
    assert "no validation AUC recorded" in all_text(fig)
    bare = histories()[["epoch", "task", "kind", "backbone", "fold"]]
    text = all_text(_training_figure(bare))
    assert "no loss recorded" in text and "no validation AUC recorded" in text
    training_curves(bare, tmp_path / "bare.png")
    assert_png(tmp_path / "bare.png", min_width=400, min_height=200)
    with pytest.raises(ValueError, match="kind"):
        _training_figure(histories().drop(columns=["kind"]))


# --- MTurk funnel -------------------------------------------------------------------------------------


def test_funnel_bars_are_annotated_and_accuracy_is_in_percent(tmp_path):
    fig = _funnel_figure(funnel())
    ax, right = fig.axes[0], fig.axes[1]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == [1000, 880, 840, 805]
    annotations = [t.get_text() for t in ax.texts]
    assert annotations == ["1,000", "880\n(−120)", "840\n(−40)", "805\n(−35)"]
    accuracy = right.get_lines()[0]
    assert np.allclose(accuracy.get_ydata()[1:], [61, 64, 66]) and np.isnan(accuracy.get_ydata()[0])
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[1].startswith("no choice: quarantined") and all(t.get_rotation() == 30 for t in
                                                                   ax.get_xticklabels())
    assert legend_texts(fig, None) == ["assignments left", "accuracy of the answers left",
                                       "accuracy on possible triplets"]

    funnel_chart(funnel(), tmp_path / "funnel.png")
    assert_png(tmp_path / "funnel.png")


def test_funnel_accuracy_axis_never_labels_an_impossible_percentage():
    table = funnel().assign(accuracy=[NAN, 0.2, 0.5, 0.95])
    right = _funnel_figure(table).axes[1]
    assert right.get_ylim()[0] < 0  # the line is lifted above the bars ...
    assert all(0 <= t <= 100 for t in right.get_yticks())  # ... without a tick below 0 %


def test_funnel_without_accuracy_draws_bars_only(tmp_path):
    table = funnel().drop(columns=["accuracy_possible_triplets"]).assign(accuracy=NAN)
    fig = _funnel_figure(table)
    assert len(fig.axes) == 1 and legend_texts(fig, None) == ["assignments left"]
    funnel_chart(table.iloc[0:0], tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png", min_width=400, min_height=200)

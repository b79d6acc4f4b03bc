"""Operating characteristics (crowdskin.evaluate.operating and its figures) on hand-made predictions:
calibration of a calibrated and of a distorted score, the threshold chosen on validation rows only,
confusion matrices that add up, per-fold ROC curves, and the figures' panels and sizes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from crowdskin.evaluate import operating, operating_figures
from crowdskin.evaluate.operating import (
    POOLED,
    Settings,
    brier_table,
    calibration_table,
    ensemble_validation,
    fold_roc,
    model_auc,
    operating_points,
    reliability_points,
    youden_threshold,
)
from crowdskin.evaluate.scores import head_summary

SETTINGS = Settings(scheme="kfold", resamples=400, confidence=0.95, seed=7)


def frame(model: str, fold: int, split: str, scores, labels, *, kind: str = "baseline", source: str = "",
          backbone: str = "smallcnn", start: int = 0) -> pd.DataFrame:
    scores = np.asarray(scores, dtype=np.float64)
    return pd.DataFrame({"model": model, "kind": kind, "source": source, "backbone": backbone, "fold": fold,
                         "split": split, "image_id": [f"{split}{fold}_{start + i:05d}" for i in range(len(scores))],
                         "score": scores, "label": np.asarray(labels, dtype=int)})


def bernoulli(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    return p, (rng.uniform(0, 1, n) < p).astype(int)


def kfold_predictions(models: dict[str, callable], n_per_fold: int = 2000, folds: int = 5) -> pd.DataFrame:
    """Each model's test scores are transform(p) on the same lesions, labels ~ Bernoulli(p)."""
    parts = []
    for fold in range(folds):
        p, y = bernoulli(n_per_fold, seed=fold)
        for model, transform in models.items():
            parts.append(frame(model, fold, "test", transform(p), y))
            vp, vy = bernoulli(200, seed=100 + fold)
            parts.append(frame(model, fold, "val", transform(vp), vy))
    return pd.concat(parts, ignore_index=True)


# --- calibration ------------------------------------------------------------------------------------


def test_a_calibrated_score_lies_on_the_diagonal_and_a_cubed_one_below_it():
    predictions = kfold_predictions({"calibrated": lambda p: p, "cubed": lambda p: p**3})
    table = calibration_table(predictions, "kfold")
    assert set(table["scope"]) == {POOLED}
    calibrated = table[table["model"] == "calibrated"]
    cubed = table[table["model"] == "cubed"]
    assert len(calibrated) == 10
    assert calibrated["count"].sum() == 5 * 2000
    # 1000 lesions a bin: the observed fraction is within a few binomial standard errors of the prediction.
    se = np.sqrt(calibrated["mean_predicted"] * (1 - calibrated["mean_predicted"]) / calibrated["count"])
    assert (np.abs(calibrated["observed"] - calibrated["mean_predicted"]) < 4 * se + 0.005).all()
    # p**3 under-states every risk: where it predicts q the truth is q**(1/3), well above the diagonal
    # in the middle bins.
    middle = cubed[(cubed["mean_predicted"] > 0.1) & (cubed["mean_predicted"] < 0.7)]
    assert len(middle) >= 4
    assert (middle["observed"] - middle["mean_predicted"] > 0.15).all()
    # Counts add up per model, and each bin's mean prediction lies inside the bin.
    assert cubed["count"].sum() == 5 * 2000
    assert ((table["mean_predicted"] >= table["bin_low"]) & (table["mean_predicted"] <= table["bin_high"])).all()
    assert (table["n_abnormal"] <= table["count"]).all()


def test_brier_of_a_calibrated_score_is_its_expected_value_and_the_ci_covers_it():
    predictions = kfold_predictions({"calibrated": lambda p: p, "cubed": lambda p: p**3})
    table = brier_table(predictions, SETTINGS).set_index(["model", "scope"])
    test = predictions[predictions["split"] == "test"]
    p = test[test["model"] == "calibrated"]["score"].to_numpy()
    expected = float(np.mean(p * (1 - p)))  # E[(p - y)^2] with y ~ Bernoulli(p); uniform p gives 1/6
    row = table.loc[("calibrated", POOLED)]
    assert row["brier"] == pytest.approx(expected, abs=0.006)
    assert row["ci_low"] < row["brier"] < row["ci_high"]
    assert row["ci_low"] < 1 / 6 < row["ci_high"]
    assert row["n"] == 10_000
    # The distorted score is worse, beyond both intervals.
    assert table.loc[("cubed", POOLED), "ci_low"] > row["ci_high"]
    assert row["brier"] < row["brier_prevalence"]


def test_stratified_brier_bootstrap_keeps_the_prevalence_and_is_reproducible():
    labels = np.array([1] * 3 + [0] * 7)
    scores = np.linspace(0.05, 0.95, 10)
    a = operating.bootstrap_brier_samples(labels, scores, n_resamples=50, seed=3)
    b = operating.bootstrap_brier_samples(labels, scores, n_resamples=50, seed=3)
    assert np.array_equal(a, b)
    # Scores 0 for normal lesions and 1 for abnormal ones: every resample has Brier 0, whatever it draws.
    assert np.all(operating.bootstrap_brier_samples(labels, labels.astype(float), n_resamples=20, seed=1) == 0)


def test_repeated_holdout_reports_each_fold_not_a_pool():
    parts = [frame("m", fold, "test", [0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1]) for fold in range(2)]
    # The same lesions in both folds: overlapping test sets.
    predictions = pd.concat(parts, ignore_index=True)
    predictions["image_id"] = ["a", "b", "c", "d"] * 2
    table = brier_table(predictions, Settings("repeated_holdout", 100, 0.95, 1))
    assert list(table["scope"]) == ["fold0", "fold1"]
    assert set(calibration_table(predictions, "repeated_holdout")["scope"]) == {"fold0", "fold1"}


def test_reliability_points_bins_match_sklearn_at_the_edges():
    # Scores on the bin edges: the counts follow sklearn's side of each edge.
    scores = np.array([0.0, 0.1, 0.2, 0.5, 0.5, 1.0])
    labels = np.array([0, 0, 1, 1, 0, 1])
    points = reliability_points(labels, scores)
    assert points["count"].sum() == 6
    assert points["n_abnormal"].sum() == 3


# --- operating point ---------------------------------------------------------------------------------


def test_youden_threshold_separates_the_validation_classes_midway():
    threshold = youden_threshold(np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8]))
    assert threshold.value == pytest.approx(0.45)
    assert threshold.youden == pytest.approx(1.0)


def test_youden_threshold_falls_back_on_one_class():
    threshold = youden_threshold(np.array([0, 0, 0]), np.array([0.1, 0.6, 0.9]))
    assert threshold.value == operating.FALLBACK_THRESHOLD
    assert math.isnan(threshold.youden)
    assert "one class" in threshold.note


def test_the_threshold_is_chosen_on_validation_rows_and_never_on_test_rows():
    # Validation separates at 0.45; the test rows alone would put it near 0.85 (their classes split there).
    val = frame("m", 0, "val", [0.1, 0.2, 0.3, 0.6, 0.7, 0.8], [0, 0, 0, 1, 1, 1])
    test = frame("m", 0, "test", [0.5, 0.55, 0.6, 0.65, 0.9, 0.95], [0, 0, 0, 0, 1, 1])
    table = operating_points(pd.concat([val, test]), SETTINGS)
    fold = table[table["scope"] == "fold0"].iloc[0]
    assert fold["threshold"] == pytest.approx(0.45)
    assert youden_threshold(test["label"].to_numpy(), test["score"].to_numpy()).value == pytest.approx(0.775)
    # At 0.45 every test lesion is called abnormal: all four normal ones are false positives.
    assert (fold["tp"], fold["fn"], fold["fp"], fold["tn"]) == (2, 0, 4, 0)
    # Changing every test score leaves the threshold where validation put it.
    shuffled = test.assign(score=test["score"].to_numpy()[::-1])
    again = operating_points(pd.concat([val, shuffled]), SETTINGS)
    assert again.loc[again["scope"] == "fold0", "threshold"].iloc[0] == pytest.approx(0.45)


def test_each_fold_uses_its_own_validation_threshold_and_counts_add_up():
    rng = np.random.default_rng(0)
    parts = []
    for fold, shift in enumerate([0.0, 0.3]):
        for split, n in (("val", 80), ("test", 120)):
            labels = rng.integers(0, 2, n)
            scores = np.clip(0.25 + 0.4 * labels + shift + rng.normal(0, 0.15, n), 0, 1)
            parts.append(frame("m", fold, split, scores, labels))
    predictions = pd.concat(parts, ignore_index=True)
    table = operating_points(predictions, SETTINGS).set_index("scope")
    assert table.loc["fold1", "threshold"] > table.loc["fold0", "threshold"] + 0.15
    for scope in ("fold0", "fold1"):
        row = table.loc[scope]
        test = predictions[(predictions["split"] == "test") & (predictions["fold"] == int(scope[-1]))]
        assert row["tp"] + row["fn"] + row["fp"] + row["tn"] == row["n_test"] == len(test)
        assert row["tp"] + row["fn"] == test["label"].sum()
        called = test["score"] >= row["threshold"]
        assert row["tp"] == int((called & (test["label"] == 1)).sum())
        assert row["sensitivity_low"] <= row["sensitivity"] <= row["sensitivity_high"]
        assert row["specificity_low"] <= row["specificity"] <= row["specificity_high"]
    pooled = table.loc[POOLED]
    for count in ("tp", "fn", "fp", "tn"):
        assert pooled[count] == table.loc["fold0", count] + table.loc["fold1", count]
    assert pooled["sensitivity"] == pytest.approx(pooled["tp"] / (pooled["tp"] + pooled["fn"]))
    assert pooled["specificity"] == pytest.approx(pooled["tn"] / (pooled["tn"] + pooled["fp"]))


def test_an_ensemble_is_thresholded_on_its_members_averaged_validation_scores():
    val_labels = [0, 0, 1, 1]
    a = frame("a", 0, "val", [0.1, 0.3, 0.5, 0.9], val_labels)
    b = frame("b", 0, "val", [0.3, 0.5, 0.7, 0.9], val_labels)
    test = frame("ens", 0, "test", [0.2, 0.8], [0, 1], kind="ensemble", source="crowd")
    predictions = pd.concat([a, b, test], ignore_index=True)
    members = [{"model": "ens", "backbone": "smallcnn", "members": [["a", "smallcnn"], ["b", "smallcnn"]]}]
    val = ensemble_validation(predictions, members)
    assert list(val["score"]) == pytest.approx([0.2, 0.4, 0.6, 0.9])
    assert set(val["kind"]) == {"ensemble"} and set(val["source"]) == {"crowd"} and set(val["split"]) == {"val"}
    table = operating_points(pd.concat([predictions, val], ignore_index=True), SETTINGS)
    row = table[(table["model"] == "ens") & (table["scope"] == "fold0")].iloc[0]
    assert row["threshold"] == pytest.approx(0.5)
    assert row["n_val"] == 4


def test_ensemble_validation_rejects_members_that_disagree_on_a_label():
    a = frame("a", 0, "val", [0.1, 0.9], [0, 1])
    b = frame("b", 0, "val", [0.1, 0.9], [1, 1])
    test = frame("ens", 0, "test", [0.2], [0], kind="ensemble")
    members = [{"model": "ens", "backbone": "smallcnn", "members": [["a", "smallcnn"], ["b", "smallcnn"]]}]
    with pytest.raises(ValueError, match="disagree"):
        ensemble_validation(pd.concat([a, b, test]), members)


# --- per-fold ROC ---------------------------------------------------------------------------------------


def test_fold_roc_runs_from_0_0_to_1_1_per_fold_and_skips_one_class_folds():
    rng = np.random.default_rng(1)
    parts = [frame("m", 0, "test", rng.uniform(0, 1, 50), rng.integers(0, 2, 50)),
             frame("m", 1, "test", rng.uniform(0, 1, 50), rng.integers(0, 2, 50)),
             frame("m", 2, "test", rng.uniform(0, 1, 10), np.zeros(10)),
             frame("m", 0, "val", rng.uniform(0, 1, 20), rng.integers(0, 2, 20))]
    table = fold_roc(pd.concat(parts, ignore_index=True))
    assert sorted(table["fold"].unique()) == [0, 1]
    for _, curve in table.groupby("fold"):
        assert (curve["fpr"].iloc[0], curve["tpr"].iloc[0]) == (0.0, 0.0)
        assert (curve["fpr"].iloc[-1], curve["tpr"].iloc[-1]) == (1.0, 1.0)
        assert curve["fpr"].is_monotonic_increasing and curve["tpr"].is_monotonic_increasing
        assert np.isinf(curve["threshold"].iloc[0])


def test_perfect_fold_passes_through_the_top_left_corner():
    table = fold_roc(frame("m", 0, "test", [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]))
    assert ((table["fpr"] == 0) & (table["tpr"] == 1)).any()


def test_model_auc_pools_k_fold_predictions():
    predictions = pd.concat([frame("m", 0, "test", [0.1, 0.9], [0, 1]),
                             frame("m", 1, "test", [0.8, 0.2], [0, 1], start=10)], ignore_index=True)
    auc = model_auc(predictions, "kfold").iloc[0]
    assert auc["scope"] == POOLED
    # Pooled: abnormal 0.9 and 0.2 against normal 0.1 and 0.8 win 3 of 4 pairs; the folds' own AUCs are 1 and 0.
    assert auc["auc"] == pytest.approx(0.75)
    overlapping = predictions.assign(image_id=["a", "b", "a", "b"])
    mean = model_auc(overlapping, "repeated_holdout").iloc[0]
    assert mean["scope"] == "mean of folds"
    assert mean["auc"] == pytest.approx(0.5)


# --- figures ------------------------------------------------------------------------------------------


def several_models() -> pd.DataFrame:
    models = {"baseline": ("baseline", ""), "random": ("random", "random"),
              "multitask-crowd-border": ("multitask", "crowd"), "multitask-crowd-color": ("multitask", "crowd"),
              "ensemble-crowd": ("ensemble", "crowd")}
    parts = []
    for fold in range(3):
        p, y = bernoulli(300, seed=fold)
        vp, vy = bernoulli(60, seed=50 + fold)
        for model, (kind, source) in models.items():
            parts.append(frame(model, fold, "test", p**1.5, y, kind=kind, source=source))
            if kind != "ensemble":
                parts.append(frame(model, fold, "val", vp**1.5, vy, kind=kind, source=source))
    return pd.concat(parts, ignore_index=True)


def test_figures_are_at_most_1000_px_wide_and_not_blank(tmp_path):
    predictions = several_models()
    calibration = calibration_table(predictions, "kfold")
    brier = brier_table(predictions, SETTINGS)
    points = operating_points(predictions, SETTINGS)
    roc = fold_roc(predictions)
    rng = np.random.default_rng(2)
    heads = pd.DataFrame({"model": "multitask-crowd-border", "kind": "multitask", "source": "crowd",
                          "backbone": "smallcnn", "fold": 0, "head": "border",
                          "image_id": [f"i{i}" for i in range(100)], "target": rng.normal(0, 1, 100)})
    heads["prediction"] = heads["target"] * 0.5 + rng.normal(0, 0.5, 100)
    paths = {name: tmp_path / f"{name}.png" for name in ("calibration", "operating", "roc", "heads")}
    operating_figures.reliability_diagram(calibration, brier, paths["calibration"])
    operating_figures.operating_point_chart(points, paths["operating"])
    operating_figures.fold_roc_curves(roc, points, paths["roc"])
    operating_figures.heads_scatter(heads, head_summary(heads, "kfold"), model_auc(predictions, "kfold"),
                                    paths["heads"])
    for path in paths.values():
        image = imread(path)
        assert image.shape[1] <= 1000, path.name
        assert image[..., :3].std() > 0.05, path.name


def test_reliability_panels_follow_families_with_the_baseline_in_each():
    predictions = several_models()
    fig = operating_figures._calibration_figure(calibration_table(predictions, "kfold"),
                                                brier_table(predictions, SETTINGS))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["baseline and random control", "multitask · crowd", "ensembles"]
    for ax in fig.axes:
        if not ax.get_title():
            continue
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert labels[0].startswith("baseline: Brier ")
        assert all("[" in label for label in labels)  # every entry has its interval
    crowd = next(ax for ax in fig.axes if ax.get_title() == "multitask · crowd")
    names = [text.get_text().split(":")[0] for text in crowd.get_legend().get_texts()]
    assert names == ["baseline", "border", "color"]


def test_heads_panel_states_spearman_mae_and_auc():
    rng = np.random.default_rng(3)
    target = rng.normal(0, 1, 200)
    heads = pd.DataFrame({"model": "multihead-crowd", "kind": "multihead", "source": "crowd", "backbone": "smallcnn",
                          "fold": 0, "head": "color", "image_id": [f"i{i}" for i in range(200)], "target": target,
                          "prediction": target})
    auc = pd.DataFrame({"model": ["multihead-crowd"], "backbone": ["smallcnn"], "auc": [0.87]})
    fig = operating_figures._heads_figure(heads, head_summary(heads, "kfold"), auc)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["ρ 1.00 · MAE 0.00 · AUC 0.87"]
    assert fig.axes[0].get_title() == "multihead-crowd\ncolor"


def test_several_backbones_get_their_own_panels(tmp_path):
    single = several_models()
    predictions = pd.concat([single, single.assign(backbone="vgg16"),
                             single[single["model"] == "ensemble-crowd"].assign(backbone="all")], ignore_index=True)
    calibration = calibration_table(predictions, "kfold")
    fig = operating_figures._calibration_figure(calibration, brier_table(predictions, SETTINGS))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3 + 3 + 1
    assert titles[-1] == "ensembles · all backbones (averaged)"
    points = operating_points(predictions, SETTINGS)
    # The ensemble over the backbones has no validation rows of its own and no members given here.
    assert points[(points["backbone"] == "all") & (points["scope"] == "fold0")]["note"].str.contains(
        "no validation").all()
    operating_figures.operating_point_chart(points, tmp_path / "op.png")
    operating_figures.fold_roc_curves(fold_roc(predictions), points, tmp_path / "roc.png")
    for name in ("op.png", "roc.png"):
        assert imread(tmp_path / name).shape[1] <= 1000

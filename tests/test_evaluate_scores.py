"""Ensembles and scores (crowdskin.evaluate.ensemble, crowdskin.evaluate.scores) on hand-made predictions."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from crowdskin.config import section
from crowdskin.evaluate import stats
from crowdskin.evaluate.ensemble import (
    ALL_BACKBONES,
    PREDICTION_COLUMNS,
    EnsembleError,
    average_predictions,
    extra_comparisons,
    plan_ensembles,
)
from crowdskin.evaluate.scores import Settings, comparison_pairs, format_table, score
from crowdskin.train.tasks import task_grid

EVALUATE = {"source_ensembles": True, "backbone_ensembles": True, "ensembles": {}}


def predictions(ids, scores, labels, *, fold=0, extra_val=True):
    frame = pd.DataFrame({"image_id": ids, "fold": fold, "split": "test", "score": scores, "label": labels,
                          "label_source": "expert"})
    if extra_val:  # a member's other splits are not averaged
        frame = pd.concat([frame, pd.DataFrame({"image_id": ["v1"], "fold": fold, "split": ["val"], "score": [0.9],
                                                "label": [1], "label_source": ["expert"]})])
    return frame


# --- ensembles -------------------------------------------------------------------------------------


def test_average_is_the_equal_weight_mean_of_the_members_test_scores():
    a = predictions(["b", "a", "c"], [0.2, 0.4, 0.9], [1, 0, 1])
    b = predictions(["a", "b", "c"], [0.6, 0.8, 0.3], [0, 1, 1])
    c = predictions(["c", "a", "b"], [0.0, 0.5, 0.5], [1, 0, 1])
    averaged = average_predictions({"a": a, "b": b, "c": c}).set_index("image_id")
    assert list(average_predictions({"a": a, "b": b}).columns) == PREDICTION_COLUMNS
    assert averaged.loc["a", "score"] == pytest.approx((0.4 + 0.6 + 0.5) / 3)
    assert averaged.loc["b", "score"] == pytest.approx((0.2 + 0.8 + 0.5) / 3)
    assert averaged.loc["c", "score"] == pytest.approx((0.9 + 0.3 + 0.0) / 3)
    assert set(averaged["split"]) == {"test"} and "v1" not in averaged.index
    assert averaged.loc["c", "label"] == 1


def test_members_testing_different_lesions_are_refused_with_the_ids():
    a = predictions(["a", "b", "c"], [0.1, 0.2, 0.3], [0, 1, 1])
    b = predictions(["a", "b", "d"], [0.1, 0.2, 0.3], [0, 1, 1])
    with pytest.raises(EnsembleError, match=r"only in first: c; only in second: d"):
        average_predictions({"first": a, "second": b}, where="e/vgg16/fold0")


def test_a_missing_score_or_a_label_disagreement_is_refused_with_the_ids():
    a = predictions(["a", "b"], [0.1, np.nan], [0, 1])
    b = predictions(["a", "b"], [0.1, 0.2], [0, 1])
    with pytest.raises(EnsembleError, match=r"no score \(NaN\) for lesion\(s\) b"):
        average_predictions({"first": a, "second": b})
    c = predictions(["a", "b"], [0.1, 0.2], [1, 1])
    with pytest.raises(EnsembleError, match=r"disagree on the label of a"):
        average_predictions({"second": b, "third": c})


def train_config(**changes):
    config = {"multitask": {"sources": ["student", "crowd"], "features": ["asymmetry", "border", "color"]},
              "random_control": True, "crowdsim": {"enabled": False}}
    return section("train", config | changes)


def test_plan_has_source_ensembles_backbone_averages_and_the_users_ensembles():
    tasks = task_grid(train_config())
    plan = {e.name: e for e in plan_ensembles(tasks, ["vgg16", "resnet50"],
                                              EVALUATE | {"ensembles": {"mine": ["baseline", "random"]}})}
    assert plan["ensemble-crowd"].members == ("multitask-crowd-asymmetry", "multitask-crowd-border",
                                              "multitask-crowd-color")
    assert plan["ensemble-crowd"].backbones == ("vgg16", "resnet50", ALL_BACKBONES)
    assert plan["ensemble-crowd"].member_jobs(ALL_BACKBONES, ["vgg16", "resnet50"])[:2] == [
        ("multitask-crowd-asymmetry", "vgg16"), ("multitask-crowd-asymmetry", "resnet50")]
    assert plan["mine"].members == ("baseline", "random")
    assert plan["baseline"].backbones == (ALL_BACKBONES,)
    assert {name for name in plan if name not in {t.name for t in tasks}} == {"ensemble-student", "ensemble-crowd",
                                                                              "mine"}
    one_backbone = plan_ensembles(tasks, ["vgg16"], EVALUATE)
    assert all(e.backbones == ("vgg16",) for e in one_backbone)
    assert [e.name for e in one_backbone] == ["ensemble-student", "ensemble-crowd"]


def test_plan_refuses_unknown_members_and_names_already_taken():
    tasks = task_grid(train_config())
    with pytest.raises(ValueError, match=r"evaluate.ensembles.mine: unknown task\(s\) \['nope'\]"):
        plan_ensembles(tasks, ["vgg16"], EVALUATE | {"ensembles": {"mine": ["baseline", "nope"]}})
    with pytest.raises(ValueError, match="already a task or a source ensemble"):
        plan_ensembles(tasks, ["vgg16"], EVALUATE | {"ensembles": {"ensemble-crowd": ["baseline"]}})


# --- scores ----------------------------------------------------------------------------------------

SETTINGS = Settings(scheme="kfold", resamples=500, confidence=0.95, seed=7)


def long_predictions(models, *, n=80, n_folds=4, backbones=("vgg16", "resnet50"), seed=0):
    """Test predictions of each (model, kind, source, separation) on every backbone: each lesion once."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    rows = []
    for backbone in backbones:
        for model, kind, source, separation in models:
            scores = labels * separation + rng.normal(size=n)
            rows.append(pd.DataFrame({"model": model, "kind": kind, "source": source, "backbone": backbone,
                                      "fold": np.arange(n) % n_folds, "image_id": [f"i{k}" for k in range(n)],
                                      "score": scores, "label": labels}))
    return pd.concat(rows, ignore_index=True)


MODELS = [("baseline", "baseline", "", 1.0), ("multitask-crowd-color", "multitask", "crowd", 1.5),
          ("random", "random", "random", 0.0), ("ensemble-crowd", "ensemble", "crowd", 2.0),
          ("crowdsim-retrain", "crowdsim-retrain", "", 1.0), ("crowdsim-incremental", "crowdsim-incremental", "", 1.2)]


def test_fold_and_pooled_aucs_match_their_definitions():
    test = long_predictions(MODELS)
    scores = score(test, SETTINGS)
    folds = scores.auc_folds
    row = folds[(folds["model"] == "baseline") & (folds["backbone"] == "vgg16") & (folds["fold"] == 2)].iloc[0]
    part = test[(test["model"] == "baseline") & (test["backbone"] == "vgg16") & (test["fold"] == 2)]
    assert row["auc"] == pytest.approx(stats.auc(part["label"], part["score"]))
    assert (row["n_test"], row["n_abnormal"]) == (len(part), part["label"].sum())

    summary = scores.auc_summary.set_index(["model", "backbone"])
    baseline = test[(test["model"] == "baseline") & (test["backbone"] == "vgg16")]
    expected = folds[(folds["model"] == "baseline") & (folds["backbone"] == "vgg16")]["auc"]
    assert summary.loc[("baseline", "vgg16"), "mean_auc"] == pytest.approx(expected.mean())
    assert summary.loc[("baseline", "vgg16"), "sd_auc"] == pytest.approx(expected.std(ddof=1))
    assert summary.loc[("baseline", "vgg16"), "pooled_auc"] == pytest.approx(stats.auc(baseline["label"],
                                                                                       baseline["score"]))
    # the shared draw gives each model the same interval as its own bootstrap with the same seed
    ordered = baseline.sort_values("image_id")
    _, low, high = stats.bootstrap_auc_ci(ordered["label"], ordered["score"], n_resamples=500, seed=7)
    assert summary.loc[("baseline", "vgg16"), "pooled_ci_low"] == pytest.approx(low)
    assert summary.loc[("baseline", "vgg16"), "pooled_ci_high"] == pytest.approx(high)


def test_a_fold_with_one_class_gets_nan_and_a_reason():
    test = long_predictions(MODELS[:2])
    one_class = test["fold"] == 1
    test.loc[one_class, "label"] = 0
    scores = score(test, SETTINGS)
    folds = scores.auc_folds[scores.auc_folds["fold"] == 1]
    assert folds["auc"].isna().all()
    assert folds["note"].str.contains("one class only").all()
    summary = scores.auc_summary
    assert (summary["n_folds"] == 3).all()
    assert summary["note"].str.contains("fold 1: test set has one class only").all()
    assert summary["mean_auc"].notna().all()


def test_table_has_table_5_rows_and_the_backbones_as_columns():
    test = long_predictions(MODELS, backbones=("vgg16", "resnet50", ALL_BACKBONES))
    scores = score(test, SETTINGS, backbones=["vgg16", "resnet50", ALL_BACKBONES])
    table = scores.auc_table
    assert list(table["model"]) == ["baseline", "multitask-crowd-color", "ensemble-crowd", "random",
                                    "crowdsim-retrain", "crowdsim-incremental"]
    assert "resnet50_pooled_ci_high" in table.columns and "all_mean_auc" in table.columns
    text = format_table(table, ["vgg16", "resnet50", ALL_BACKBONES])
    assert list(text.columns) == ["model", "vgg16", "resnet50", "all backbones"]
    mean = table.loc[0, "vgg16_mean_auc"]
    assert text.loc[0, "vgg16"].startswith(f"{mean:.3f} ± ")
    assert " · " in text.loc[0, "vgg16"] and "[" in text.loc[0, "vgg16"]


def test_comparisons_pair_each_model_with_its_backbones_baseline_and_crowdsim_with_itself():
    """The extra pairs are what the kinds ask for: fails if crowdsim-retrain's kind stops naming
    crowdsim-incremental, or if the scores ignore the pairs they are given."""
    test = long_predictions(MODELS)
    tasks = task_grid(train_config(crowdsim={"enabled": True}))
    extra = tuple(extra_comparisons(tasks, plan_ensembles(tasks, ["vgg16"], EVALUATE)))
    assert ("crowdsim-retrain", "crowdsim-incremental") in extra
    comparisons = score(test, replace(SETTINGS, extra_comparisons=extra)).comparisons
    pairs = set(zip(comparisons["model"], comparisons["reference"], comparisons["backbone"], strict=True))
    assert ("crowdsim-retrain", "crowdsim-incremental", "vgg16") in pairs
    assert ("ensemble-crowd", "baseline", "resnet50") in pairs
    # per backbone: five against the baseline, crowdsim's own pair, two against the randomized control
    assert len(comparisons) == 2 * (len(MODELS) - 1 + 1 + 2)
    row = comparisons[(comparisons["model"] == "random") & (comparisons["backbone"] == "vgg16")].iloc[0]
    sub = test[test["backbone"] == "vgg16"]
    a = sub[sub["model"] == "random"].sort_values("image_id")
    b = sub[sub["model"] == "baseline"].sort_values("image_id")
    expected = stats.delong(a["label"], a["score"], b["score"])
    assert row["difference"] == pytest.approx(expected.difference)
    assert row["delong_p"] == pytest.approx(expected.p)
    assert row["ci_low"] < row["difference"] < row["ci_high"]
    assert (comparisons["holm_p"] >= comparisons["delong_p"]).all()
    assert comparisons["holm_p"].to_numpy() == pytest.approx(stats.holm(comparisons["delong_p"].to_numpy()))


def test_every_annotation_model_and_ensemble_is_compared_with_the_randomized_control():
    """Fails if a model with annotation heads or an ensemble of several tasks misses its comparison
    with the control, or if a model without heads (the baseline, CROWDSIM) or the control gets one."""
    tasks = task_grid(train_config(crowdsim={"enabled": True}))
    plan = plan_ensembles(tasks, ["vgg16", "resnet50"], EVALUATE | {"backbone_ensembles": True})
    extra = extra_comparisons(tasks, plan)
    against_control = {model for model, reference in extra if reference == "random"}
    with_heads = {t.name for t in tasks if t.kind in ("multitask", "multihead", "disagreement")}
    assert with_heads and with_heads <= against_control
    assert {e.name for e in plan if e.name.startswith("ensemble-")} <= against_control
    assert not against_control & {"baseline", "random", "crowdsim-retrain", "crowdsim-incremental"}
    assert len(extra) == len(set(extra))
    # without a control in the grid there is nothing to compare with
    no_control = [t for t in tasks if t.name != "random"]
    assert not [pair for pair in extra_comparisons(no_control, plan) if pair[1] == "random"]


def test_adjusted_intervals_clear_zero_only_beside_a_holm_p_below_alpha():
    """The intervals shown beside Holm p: on many comparisons, some near the edge, an adjusted
    interval that excludes 0 always sits beside Holm p < 0.05, while the unadjusted bootstrap
    interval does not (the inconsistency a reader saw); with one comparison it is the usual
    95 % DeLong interval."""
    models = [("baseline", "baseline", "", 1.0)] + [
        (f"multitask-crowd-f{k}", "multitask", "crowd", 1.0 + 0.12 * k) for k in range(12)]
    consistent_rows = unadjusted_disagreements = 0
    for seed in range(6):
        comparisons = score(long_predictions(models, n=160, seed=seed), SETTINGS).comparisons
        clears = (comparisons["adjusted_ci_low"] > 0) | (comparisons["adjusted_ci_high"] < 0)
        assert (comparisons.loc[clears, "holm_p"] < 0.05).all()
        consistent_rows += int(clears.sum())
        bootstrap_clears = (comparisons["ci_low"] > 0) | (comparisons["ci_high"] < 0)
        unadjusted_disagreements += int((bootstrap_clears & (comparisons["holm_p"] >= 0.05)).sum())
        assert (comparisons["adjusted_ci_low"] <= comparisons["difference"]).all()
        assert (comparisons["difference"] <= comparisons["adjusted_ci_high"]).all()
    # both situations occur, so the assertions above were exercised
    assert consistent_rows > 0 and unadjusted_disagreements > 0

    one = score(long_predictions(models[:2], n=160, backbones=("vgg16",)), SETTINGS).comparisons.iloc[0]
    half = 1.959964 * abs(one["difference"] / one["delong_z"])
    assert one["adjusted_ci_low"] == pytest.approx(one["difference"] - half, rel=1e-5)
    assert one["adjusted_ci_high"] == pytest.approx(one["difference"] + half, rel=1e-5)


def test_simultaneous_intervals_widen_with_the_number_of_comparisons():
    low1, high1 = stats.simultaneous_intervals([0.02], [0.0001])
    low10, high10 = stats.simultaneous_intervals([0.02] * 10, [0.0001] * 10)
    assert high1[0] - low1[0] < high10[0] - low10[0]
    assert stats.simultaneous_intervals([0.02], [0.0])[0][0] == 0.02
    with pytest.raises(ValueError, match="non-negative"):
        stats.simultaneous_intervals([0.0], [-1.0])


def test_a_model_equal_to_the_baseline_differs_by_zero_with_p_one():
    test = long_predictions(MODELS[:1])
    copy = test.assign(model="multitask-crowd-color", kind="multitask", source="crowd")
    comparisons = score(pd.concat([test, copy]), SETTINGS).comparisons
    assert (comparisons["difference"] == 0).all()
    assert (comparisons["delong_p"] == 1).all()
    assert (comparisons["ci_low"] == 0).all() and (comparisons["ci_high"] == 0).all()


def test_repeated_holdout_reports_per_fold_figures_only():
    test = long_predictions(MODELS[:2])
    scores = score(test, Settings("repeated_holdout", 200, 0.95, 1))
    assert scores.auc_summary["pooled_auc"].isna().all()
    assert scores.auc_summary["note"].str.contains("test sets overlap").all()
    assert set(scores.comparisons["scope"]) == {"fold0", "fold1", "fold2", "fold3"}
    assert scores.roc.empty


def test_a_kfold_run_testing_a_lesion_twice_is_not_pooled():
    test = long_predictions(MODELS[:2])
    twice = test[test["image_id"] == "i0"].assign(fold=1)
    scores = score(pd.concat([test, twice]), SETTINGS)
    assert scores.auc_summary["pooled_auc"].isna().all()
    assert scores.auc_summary["note"].str.contains(r"tests lesion\(s\) \['i0'\] in more than one fold").all()


def test_roc_points_and_metrics_json():
    test = long_predictions(MODELS[:2])
    scores = score(test, SETTINGS)
    curve = scores.roc[(scores.roc["model"] == "baseline") & (scores.roc["backbone"] == "vgg16")]
    assert curve["fpr"].iloc[0] == 0 and curve["tpr"].iloc[-1] == 1
    assert curve["fpr"].is_monotonic_increasing
    # trapezoid area under the points is the AUC
    area = float(np.sum(np.diff(curve["fpr"]) * (curve["tpr"].to_numpy()[1:] + curve["tpr"].to_numpy()[:-1]) / 2))
    pooled = scores.auc_summary.set_index(["model", "backbone"]).loc[("baseline", "vgg16"), "pooled_auc"]
    assert area == pytest.approx(pooled)
    payload = json.loads(json.dumps(scores.metrics))
    assert payload["vgg16"]["baseline"]["pooled_auc"] == pytest.approx(pooled, abs=1e-6)
    assert "difference_vs_baseline" in payload["resnet50"]["multitask-crowd-color"]


def test_comparison_pairs_without_a_baseline():
    assert comparison_pairs([("random", "vgg16")]) == []
    assert comparison_pairs([("baseline", "vgg16"), ("random", "vgg16"), ("random", "all")]) == [
        ("random", "baseline", "vgg16")]


# --- predictions against their folds -----------------------------------------------------------------


def _folds_of(n: int = 30, n_folds: int = 1) -> pd.DataFrame:
    from crowdskin.train.splits import make_folds

    lesions = pd.DataFrame({"image_id": [f"L{i:02d}" for i in range(n * 5)], "abnormal": [i % 2 for i in range(n * 5)],
                            "group_id": pd.NA})
    return make_folds(lesions, scheme="kfold", n_folds=5, seed=0)


def test_predictions_must_hold_each_test_lesion_of_their_fold_once_and_no_other():
    from crowdskin.evaluate.coverage import PredictionsError, check_test_predictions, fold_test_lesions

    folds = _folds_of()
    expected = fold_test_lesions(folds, 0)
    ids = sorted(expected)
    assert len(ids) == 30
    whole = predictions(ids, np.linspace(0, 1, 30), [i % 2 for i in range(30)])
    check_test_predictions(whole, expected, source="p.parquet", fold=0, folds_source="folds.parquet")
    with pytest.raises(PredictionsError, match=r"p.parquet: the test predictions of fold 0 are not the 30 test lesions "
                                               r"of that fold in folds.parquet: missing 10 lesion\(s\) 'L\d+', .* "
                                               r"\(\+5 more\)$"):
        check_test_predictions(whole.iloc[10:], expected, source="p.parquet", fold=0, folds_source="folds.parquet")
    other = sorted(fold_test_lesions(folds, 1))[0]
    changed = pd.concat([whole, whole.iloc[[3]], predictions([other], [0.5], [1], extra_val=False)])
    with pytest.raises(PredictionsError, match=rf"not in the fold's test split: 1 lesion\(s\) '{other}'; predicted "
                                               rf"more than once: 1 lesion\(s\) '{ids[3]}'"):
        check_test_predictions(changed, expected, source="p.parquet", fold=0, folds_source="folds.parquet")


def test_an_ensemble_member_missing_test_lesions_of_its_fold_is_refused():
    from crowdskin.evaluate.coverage import PredictionsError, fold_test_lesions
    from crowdskin.evaluate.ensemble import FoldTests

    folds = _folds_of()
    ids = sorted(fold_test_lesions(folds, 2))
    member = predictions(ids, np.linspace(0, 1, 30), [i % 2 for i in range(30)], fold=2)
    tests = FoldTests(2, set(ids), "splits/folds.parquet")
    assert len(average_predictions({"a": member, "b": member}, fold_tests=tests)) == 30
    # Both members lost the same rows: they agree with each other, not with the fold.
    with pytest.raises(PredictionsError, match=rf"e/fold2: a: the test predictions of fold 2 .* in "
                                               rf"splits/folds.parquet: missing 1 lesion\(s\) '{ids[0]}'"):
        average_predictions({"a": member.iloc[1:], "b": member.iloc[1:]}, where="e/fold2", fold_tests=tests)


SCRIPTS_READING_PREDICTIONS = {
    "scores": (("auc_folds", "auc_summary", "auc_table", "auc_table_md", "comparisons", "roc", "heads", "metrics"),
               {"backbones": ["smallcnn"], "extra_comparisons": []}),
    "operating": (("calibration", "brier", "operating", "fold_roc", "head_points", "calibration_figure",
                   "operating_figure", "fold_roc_figure", "heads_figure"),
                  {"ensembles": []}),
}


@pytest.mark.parametrize("stage", sorted(SCRIPTS_READING_PREDICTIONS))
def test_the_rules_reading_predictions_refuse_a_file_missing_test_lesions(tmp_path, stage):
    """The scoring and the operating-characteristics rules as Snakemake runs them: a predictions file
    that lost 10 of its fold's 30 test rows stops the rule before it writes anything."""
    import logging
    import runpy
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    from crowdskin.evaluate.coverage import PredictionsError

    folds = _folds_of()
    folds.to_parquet(tmp_path / "folds.parquet")
    paths, index = [], []
    for fold in range(5):
        ids = sorted(folds.loc[(folds["fold"] == fold) & (folds["split"] == "test"), "image_id"])
        frame = predictions(ids, np.linspace(0, 1, len(ids)), [int(i[1:]) % 2 for i in ids], fold=fold)
        if fold == 3:
            frame = frame.iloc[10:]
        paths.append(str(tmp_path / f"fold{fold}.parquet"))
        frame.to_parquet(paths[-1])
        index.append({"model": "baseline", "kind": "baseline", "source": "", "backbone": "smallcnn", "fold": fold})
    names, stage_params = SCRIPTS_READING_PREDICTIONS[stage]
    outputs = {name: str(tmp_path / f"{name}.out") for name in names}
    rule = SimpleNamespace(
        input=SimpleNamespace(predictions=paths, folds=str(tmp_path / "folds.parquet")),
        output=SimpleNamespace(**outputs), log=[str(tmp_path / f"{stage}.log")], rule=stage,
        params=SimpleNamespace(index=index, scheme="kfold", seed=0, **stage_params,
                               bootstrap={"resamples": 10, "confidence": 0.95, "seed": None}))
    script = Path(__file__).resolve().parents[1] / f"workflow/scripts/evaluate_{stage}.py"
    stderr = sys.stderr
    try:
        with pytest.raises(PredictionsError, match=rf"{paths[3]}: the test predictions of fold 3 are not the 30 test "
                                                   r"lesions of that fold in .*folds.parquet: missing 10 lesion\(s\)"):
            runpy.run_path(str(script), init_globals={"snakemake": rule})
    finally:
        sys.stderr = stderr
        logging.getLogger().handlers.clear()
    assert not any(Path(path).exists() for path in outputs.values())

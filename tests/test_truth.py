"""crowdskin.truth: the recovered-vs-truth checks on hand-made tables, then on a generated synthetic set.

Each unit test names in its docstring a deliberate break of truth.py that makes it fail (each was
tried and seen failing before the code was restored).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdskin.automated.annotate import Settings, annotate_table, to_annotations
from crowdskin.config import load_config, section
from crowdskin.crowd.consensus import consensus_targets
from crowdskin.crowd.labels import worker_reliability
from crowdskin.crowd.mturk import FilterSettings, apply_filters, quarantined_assignments
from crowdskin.ingest import ingest_all
from crowdskin.report import status_counts
from crowdskin.synthetic import SyntheticSettings, generate
from crowdskin.tables import AUTOMATED_COLORS
from crowdskin.truth import (
    AUC_COLUMNS,
    FLOORS,
    LAYER_MINUS_DAWID_SKENE,
    RELIABILITY_AUC,
    RELIABILITY_SPEARMAN,
    SPREAD_HEAD_COLUMNS,
    SPREAD_MEAN,
    TRAINED_TABLES,
    Floor,
    annotations_vs_truth,
    automated_vs_truth,
    consensus_vs_truth,
    funnel_vs_spammers,
    reliability_per_worker,
    reliability_vs_truth,
    spearman,
    spread_heads_vs_ambiguity,
    spread_vs_ambiguity,
    summarise,
    training_auc,
)

# Four lesions: every feature, every colour flag and the ambiguity vary, so every correlation is defined.
TRUTH = pd.DataFrame({
    "image_id": ["S0", "S1", "S2", "S3"],
    "abnormal": [0, 1, 0, 1],
    "asymmetry": [0, 1, 2, 2],
    "border": [0, 3, 5, 7],
    "color": [1, 2, 3, 4],
    "colors": ["red", "black|white", "blue_gray|dark_brown|light_brown",
               "black|blue_gray|light_brown|white"],
    "ambiguity": [0.0, 0.5, 0.0, 0.9],
})


def perfect_automated(truth: pd.DataFrame = TRUTH) -> pd.DataFrame:
    """The automated table that recovers `truth` exactly (plus a lesion the truth does not know)."""
    frame = pd.DataFrame({
        "image_id": [*truth["image_id"], "OTHER"],
        "asymmetry_class": pd.array([*truth["asymmetry"], 1], dtype="Int8"),
        "border_score": pd.array([*truth["border"], 1], dtype="Int32"),
        "color_score": pd.array([*truth["color"], 1], dtype="Int8"),
    })
    for name in AUTOMATED_COLORS:
        frame[f"color_{name}"] = pd.array([name in c.split("|") for c in truth["colors"]] + [True], dtype="boolean")
    return frame


def by_feature(result: pd.DataFrame, key: str = "feature") -> pd.DataFrame:
    return result.set_index(key)


# --- automated_vs_truth ------------------------------------------------------------------------

def test_automated_perfect_recovery_agrees_fully():
    """Break: compare `pairs["recovered"] != pairs["true"]` in _agreement -> agreement 0, not 1."""
    result = by_feature(automated_vs_truth(perfect_automated(), TRUTH))
    assert list(result.index) == ["asymmetry", "border", "color", *(f"color_{n}" for n in AUTOMATED_COLORS)]
    assert (result["n_truth"] == 4).all() and (result["n"] == 4).all()  # OTHER is not in the truth
    assert (result["exact_agreement"] == 1.0).all()
    assert np.allclose(result["spearman"], 1.0)


def test_automated_swapped_classes_lower_agreement_by_hand():
    """Truth [0,1,2,2], recovered [1,0,2,2]: 2 of 4 agree; rank deviations (-1.5,-0.5,1,1) against
    (-0.5,-1.5,1,1) give rho = 3.5 / 4.5 = 7/9. Break: Pearson on the values for Spearman
    (`np.corrcoef(a, b)[0, 1]` in spearman) -> 1.75 / 2.75 = 7/11."""
    automated = perfect_automated()
    automated.loc[[0, 1], "asymmetry_class"] = [1, 0]
    row = by_feature(automated_vs_truth(automated, TRUTH)).loc["asymmetry"]
    assert row["exact_agreement"] == 0.5
    assert row["spearman"] == pytest.approx(7 / 9)


def test_automated_missing_score_is_left_out_not_counted_wrong():
    """A lesion without a score leaves n (3) but stays in n_truth (4); the other 3 agree fully.
    Break: drop `.dropna()` in _agreement -> the NaN pair counts as a disagreement (0.75)."""
    automated = perfect_automated()
    automated.loc[2, "border_score"] = pd.NA
    automated.loc[2, "color_red"] = pd.NA
    result = by_feature(automated_vs_truth(automated, TRUTH))
    assert result.loc["border", "n_truth"] == 4 and result.loc["border", "n"] == 3
    assert result.loc["border", "exact_agreement"] == 1.0
    assert result.loc["color_red", "n"] == 3 and result.loc["color_red", "exact_agreement"] == 1.0


def test_automated_wrong_colour_flag_costs_one_quarter():
    """Red detected on S2, where it was not painted: 3 of 4 flags agree, the other flags all 4.
    Break: compare every detected flag with the truth's white column (`flags["white"]` for
    `flags[name]` in automated_vs_truth) -> red agrees 0.0."""
    automated = perfect_automated()
    automated.loc[2, "color_red"] = True
    result = by_feature(automated_vs_truth(automated, TRUTH))
    assert result.loc["color_red", "exact_agreement"] == 0.75
    assert (result.drop(index="color_red")["exact_agreement"] == 1.0).all()


# --- annotations_vs_truth and consensus_vs_truth ---------------------------------------------

def test_annotations_one_score_off_by_two():
    """Student scores border as the truth except S1 (3 -> 5): agreement 3/4, MAE 2/4 = 0.5; a crowd
    row of another feature (diameter) is skipped. Break: `.abs().sum()` for `.abs().mean()` in
    _agreement -> MAE 2.0."""
    rows = [{"image_id": i, "source": "student", "feature": "border", "value": float(v)}
            for i, v in zip(TRUTH["image_id"], [0, 5, 5, 7], strict=True)]
    rows.append({"image_id": "S0", "source": "crowd", "feature": "diameter", "value": 3.0})
    result = annotations_vs_truth(pd.DataFrame(rows), TRUTH)
    assert len(result) == 1
    row = result.iloc[0]
    assert (row["source"], row["feature"], row["n"]) == ("student", "border", 4)
    assert row["exact_agreement"] == 0.75 and row["mean_abs_error"] == 0.5


def test_consensus_order_not_scale_and_only_available_targets():
    """z-scored truth -> rho 1, reversed -> rho -1; the unavailable S3 is out of n (3) but in
    n_truth (4). Break: n_truth from the available rows (`len(available)` for `len(group)` in
    consensus_vs_truth) -> crowd n_truth 3."""
    z = (TRUTH["border"] - TRUTH["border"].mean()) / TRUTH["border"].std()
    rows = []
    for source, sign in (("student", 1.0), ("crowd", -1.0)):
        for image_id, value in zip(TRUTH["image_id"], z, strict=True):
            available = not (source == "crowd" and image_id == "S3")
            rows.append({"image_id": image_id, "source": source, "feature": "border",
                         "target": sign * value if available else math.nan, "available": available})
    result = consensus_vs_truth(pd.DataFrame(rows), TRUTH).set_index("source")
    assert result.loc["student", "spearman"] == pytest.approx(1.0)
    assert result.loc["crowd", "spearman"] == pytest.approx(-1.0)
    assert result.loc["crowd", "n"] == 3 and result.loc["crowd", "n_truth"] == 4


# --- spread_vs_ambiguity ----------------------------------------------------------------------

def spread_targets() -> pd.DataFrame:
    """Student targets: border spreads 0.2, 0.6, 0.5, 1.0 (S2 by two raters); colour 0.4 on S0, none
    on S1 (unannotated), 0.0 on S2 from a single rater (no spread), 0.8 on S3; a diameter row, which
    is no ABC feature. Crowd: border spreads ranked as the ambiguity. Automated: one rater, std 0."""
    rows = [("student", "border", s, std, n) for s, std, n in
            (("S0", 0.2, 3), ("S1", 0.6, 3), ("S2", 0.5, 2), ("S3", 1.0, 3))]
    rows += [("student", "color", s, std, n) for s, std, n in
             (("S0", 0.4, 3), ("S1", math.nan, 0), ("S2", 0.0, 1), ("S3", 0.8, 3))]
    rows += [("student", "diameter", "S0", 5.0, 3)]
    rows += [("crowd", "border", s, std, 3) for s, std in (("S0", 0.1), ("S1", 0.5), ("S2", 0.2), ("S3", 0.9))]
    rows += [("automated", "border", s, 0.0, 1) for s in TRUTH["image_id"]]
    return pd.DataFrame(rows, columns=["source", "feature", "image_id", "std", "n_annotators"])


def test_spread_vs_ambiguity_by_hand():
    """Student mean spread per lesion: S0 (0.2 + 0.4) / 2 = 0.3, S1 0.6, S2 0.5 (its lone colour score
    has no spread), S3 0.9; ranks 1, 3, 2, 4 against the ambiguity's 1.5, 3, 1.5, 4: rho = 4.5 /
    sqrt(5 * 4.5) = 0.9487. Clear lesions S0, S2: mean 0.4; ambiguous S1, S3: 0.75. The automated
    source (one rater) has no row; the diameter row is no ABC feature. Break: drop the
    `.where(scored["n_annotators"] >= 2)` in spread_vs_ambiguity -> a lone score counts as full
    agreement: the automated source gets rows, S2's spread is 0.25 and the clear mean 0.275."""
    result = spread_vs_ambiguity(spread_targets(), TRUTH).set_index(["source", "feature"])
    assert list(result.index) == [("crowd", SPREAD_MEAN), ("crowd", "border"), ("student", SPREAD_MEAN),
                                  ("student", "border"), ("student", "color")]
    student = result.loc[("student", SPREAD_MEAN)]
    assert (student["n_truth"], student["n"], student["n_ambiguous"]) == (4, 4, 2)
    assert student["mean_spread_clear"] == pytest.approx(0.4)
    assert student["mean_spread_ambiguous"] == pytest.approx(0.75)
    assert student["spearman"] == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    color = result.loc[("student", "color")]
    assert (color["n_truth"], color["n"], color["n_ambiguous"]) == (4, 2, 1)
    assert result.loc[("crowd", SPREAD_MEAN), "spearman"] == pytest.approx(result.loc[("crowd", "border"), "spearman"])


def test_spread_vs_ambiguity_reversed_spread_correlates_negatively():
    """Spread falling as the ambiguity rises gives a negative rho, so a check of it can fail. Break:
    `spearman(pairs["true"], pairs["true"])` for the spread in spread_vs_ambiguity -> rho 1."""
    targets = pd.DataFrame({"source": "crowd", "feature": "border", "image_id": TRUTH["image_id"],
                            "std": [0.9, 0.3, 0.8, 0.1], "n_annotators": 3})
    row = spread_vs_ambiguity(targets, TRUTH).iloc[0]
    assert row["spearman"] < -0.9


def test_spread_heads_rank_test_lesions_pooled_over_folds():
    """Two folds test S0, S1 and S2, S3; only test rows count (the train rows would reverse the order).
    The mean of the two spread heads per lesion: S0 0.15, S1 0.5, S2 0.3, S3 0.8: ranks 1, 3, 2, 4
    against the ambiguity's 1.5, 3, 1.5, 4: rho 0.9487, as in the annotations' check. The consensus
    head (`prediction_border`) is no spread head. Break: read every split in
    spread_heads_vs_ambiguity -> the train rows' reversed predictions pull rho below 0."""
    rows = []
    for fold, tested in ((0, ("S0", "S1")), (1, ("S2", "S3"))):
        for image_id, border_std, color_std in (("S0", 0.1, 0.2), ("S1", 0.4, 0.6), ("S2", 0.2, 0.4),
                                                ("S3", 0.7, 0.9)):
            split = "test" if image_id in tested else "train"
            flip = -10.0 if split == "train" else 1.0
            rows.append({"model": "disagreement-crowd", "source": "crowd", "backbone": "smallcnn", "fold": fold,
                         "split": split, "image_id": image_id, "prediction_border": 5.0,
                         "prediction_border_std": flip * border_std, "prediction_color_std": flip * color_std})
    result = spread_heads_vs_ambiguity(pd.DataFrame(rows), TRUTH).set_index("head")
    assert list(result.index) == [SPREAD_MEAN, "border_std", "color_std"]
    mean = result.loc[SPREAD_MEAN]
    assert (mean["n_truth"], mean["n"], mean["n_ambiguous"]) == (4, 4, 2)
    assert mean["spearman"] == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    assert mean["mean_prediction_ambiguous"] == pytest.approx((0.5 + 0.8) / 2)
    assert spread_heads_vs_ambiguity(pd.DataFrame(rows).drop(columns=["prediction_border_std",
                                                                      "prediction_color_std"]), TRUTH).empty


# --- funnel_vs_spammers ------------------------------------------------------------------------

def decisions() -> pd.DataFrame:
    """Spammer SP: 3 answers, 2 rejected for time on task, 1 kept. Careful CA: 3 answers, 1 rejected
    for its confidence (its time flag also fires, but the funnel charged confidence first)."""
    return pd.DataFrame({
        "worker_id": ["SP", "SP", "SP", "CA", "CA", "CA"],
        "usable": [True] * 6,
        "rejected_by": pd.array(["time_on_task", "time_on_task", None, "confidence", None, None], dtype="string"),
        "flag_confidence": [False, False, False, True, False, False],
        "flag_time_on_task": [True, True, False, True, False, False],
    })


WORKERS = pd.DataFrame({"worker_id": ["SP", "CA", "IDLE"], "is_spammer": ["True", "False", "True"]})


def test_funnel_kept_spammer_answer_lowers_recall_by_hand():
    """All rules: TP 2 (SP rejected), FP 1 (CA rejected), FN 1 (SP kept): precision = recall = 2/3.
    time_on_task alone: TP 2, FP 1 -> 2/3, 2/3; confidence alone: TP 0, FP 1 -> 0, recall 0.
    Break: `.str.lower()` removed from _is_true -> "True" is no spammer, recall NaN."""
    result = funnel_vs_spammers(decisions(), WORKERS).set_index("rule")
    assert list(result.index) == ["confidence", "time_on_task", "all rules"]
    overall = result.loc["all rules"]
    assert (overall["n"], overall["spam"]) == (6, 3)
    assert (overall["true_positives"], overall["false_positives"], overall["false_negatives"]) == (2, 1, 1)
    assert overall["precision"] == pytest.approx(2 / 3) and overall["recall"] == pytest.approx(2 / 3)
    assert result.loc["time_on_task", "recall"] == pytest.approx(2 / 3)
    assert result.loc["confidence", "precision"] == 0.0 and result.loc["confidence", "recall"] == 0.0


def test_funnel_quarantined_rows_count_only_for_the_whole_funnel():
    """A quarantined spammer answer (usable False, rejected at ingest, flags False) is a TP of `all
    rules` (3 of 4 spam answers rejected) but no rule saw it. Break: drop the `usable` mask in the
    per-rule rows -> time_on_task gets n 7 and recall 2/4."""
    frame = pd.concat([decisions(), pd.DataFrame({
        "worker_id": ["SP"], "usable": [False], "rejected_by": pd.array(["unparseable"], dtype="string"),
        "flag_confidence": [False], "flag_time_on_task": [False]})], ignore_index=True)
    result = funnel_vs_spammers(frame, WORKERS).set_index("rule")
    assert result.loc["all rules", "recall"] == pytest.approx(3 / 4)
    assert result.loc["time_on_task", "n"] == 6 and result.loc["time_on_task", "recall"] == pytest.approx(2 / 3)


def test_funnel_unknown_worker_is_an_error():
    """Break: remove the `unknown` check -> map gives NaN, astype(bool) counts it as a spammer, no error."""
    with pytest.raises(ValueError, match="NEW"):
        funnel_vs_spammers(decisions().assign(worker_id=["SP", "SP", "SP", "CA", "CA", "NEW"]), WORKERS)


# --- reliability_per_worker and reliability_vs_truth -----------------------------------------

def kept_answers(votes: list[tuple[str, str, int]]) -> pd.DataFrame:
    """Kept MTurk answers casting exactly `votes` (worker, chosen candidate, anchor label): the chosen
    candidate sits in slot A, the other slot holds a candidate no vote goes to."""
    return pd.DataFrame({
        "worker_id": [w for w, _, _ in votes], "assignment_id": [f"A{i}" for i in range(len(votes))],
        "choice": "A", "candidate_a_id": [t for _, t, _ in votes], "candidate_b_id": "S3",
        "anchor_label": pd.array([label for _, _, label in votes], dtype="Int8"),
    })


# TRUTH's abnormal: S0 0, S1 1, S2 0. CA's votes: S0 0 right, S1 1 right, S2 1 wrong, NEW (a candidate
# the truth does not know) not judged -> 2 of 3. SP's: S0 1 wrong, S1 1 right -> 1 of 2. IDLE: no vote.
VOTES = [("CA", "S0", 0), ("CA", "S1", 1), ("CA", "S2", 1), ("CA", "NEW", 0), ("SP", "S0", 1), ("SP", "S1", 1)]
RELIABILITY = pd.DataFrame({"worker_id": ["CA", "SP"], "n_votes": [4, 2], "reliability": [0.9, 0.6],
                            "reliability_method": "dawid_skene"})


def test_reliability_per_worker_accuracy_by_hand_and_every_worker_kept():
    """CA 2/3 (the NEW vote out of n_votes_with_truth), SP 1/2; IDLE, filtered out entirely, keeps its
    row with 0 votes and no estimate. Break: `true_label.notna()` mask dropped in reliability_per_worker
    (the unjudged vote counts as wrong) -> CA 2/4 and n_votes_with_truth 4."""
    result = reliability_per_worker(RELIABILITY, kept_answers(VOTES), TRUTH, WORKERS).set_index("worker_id")
    assert list(result.index) == ["CA", "IDLE", "SP"]
    assert result.loc["CA", "n_votes"] == 4 and result.loc["CA", "n_votes_with_truth"] == 3
    assert result.loc["CA", "empirical_accuracy"] == pytest.approx(2 / 3)
    assert result.loc["SP", "empirical_accuracy"] == pytest.approx(1 / 2)
    assert result.loc["IDLE", "n_votes"] == 0 and math.isnan(result.loc["IDLE", "estimated_reliability"])
    assert result.loc["CA", "estimated_reliability"] == 0.9 and bool(result.loc["SP", "is_spammer"])
    assert (result["reliability_method"] == "dawid_skene").all()


def test_reliability_per_worker_unknown_worker_is_an_error():
    """A worker of the crowd stage missing from the truth would silently count as careful. Break:
    remove the `unknown` check in reliability_per_worker -> no error."""
    with pytest.raises(ValueError, match="NEWBIE"):
        reliability_per_worker(RELIABILITY, kept_answers([*VOTES, ("NEWBIE", "S0", 0)]), TRUTH, WORKERS)


def per_worker(estimates: list[float], accuracy: list[float], spam: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"worker_id": [f"W{i}" for i in range(len(spam))], "is_spammer": spam,
                         "empirical_accuracy": accuracy, "estimated_reliability": estimates})


def test_reliability_auc_and_spearman_by_hand():
    """Careful 0.9, 0.7 vs spammers 0.7, 0.5: pairs 1 + 1 + 0.5 (the tie) + 1 = 3.5 of 4 -> AUC 0.875;
    the fifth worker has no estimate: in n_truth (5), not in n (4). Accuracy (0.8, 0.6, 0.7, 0.4)
    ranks 4,2,3,1 against the estimate's 4,2.5,2.5,1: Spearman = 4.5 / sqrt(5 * 4.5) = 0.9487.
    Break: spammers as the positive class (`spammer[estimated]` for `~spammer[estimated]`) -> 0.125."""
    table = per_worker([0.9, 0.7, 0.7, 0.5, math.nan], [0.8, 0.6, 0.7, 0.4, 0.9], [False, False, True, True, True])
    result = reliability_vs_truth(table).set_index("statistic")
    assert result.loc[RELIABILITY_AUC, "value"] == pytest.approx(0.875)
    assert result.loc[RELIABILITY_SPEARMAN, "value"] == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    assert (result["n_truth"] == 5).all() and (result["n"] == 4).all() and (result["n_spammers"] == 2).all()


def test_reliability_auc_undefined_without_an_estimated_spammer():
    """The default data's case: the funnel left no spammer a kept answer, so no spammer has an estimate
    and the AUC is NaN with n_spammers 0, not 1.0 or an error. Break: a missing estimate read as 0
    (`estimate = estimate.fillna(0.0)` before `estimated` in reliability_vs_truth) -> AUC 1.0, n 3."""
    table = per_worker([0.9, 0.8, math.nan], [0.9, 0.8, 0.5], [False, False, True])
    row = reliability_vs_truth(table).set_index("statistic").loc[RELIABILITY_AUC]
    assert math.isnan(row["value"]) and row["n"] == 2 and row["n_spammers"] == 0


# --- training_auc ---------------------------------------------------------------------------------

def auc_summary() -> pd.DataFrame:
    rows = [("baseline", "baseline", "", "vgg16", 0.74, 0.70), ("baseline", "baseline", "", "all", 0.82, 0.81),
            ("multitask-crowd-border", "multitask", "crowd", "vgg16", 0.76, 0.72),
            ("ensemble-crowd", "ensemble", "crowd", "vgg16", 0.77, 0.75), ("random", "random", "", "vgg16", 0.5, 0.5)]
    frame = pd.DataFrame(rows, columns=["model", "kind", "source", "backbone", "mean_auc", "pooled_auc"])
    return frame.assign(n_folds=5, sd_auc=0.02, pooled_ci_low=0.6, pooled_ci_high=0.9, n_pooled=500, note="")


def test_training_auc_keeps_the_baseline_and_multitask_models():
    """Break: `TRAINED_KINDS = ("baseline", "multitask", "ensemble")` -> the ensemble row too."""
    result = training_auc(auc_summary())
    assert list(zip(result["model"], result["backbone"], strict=True)) == [
        ("baseline", "vgg16"), ("baseline", "all"), ("multitask-crowd-border", "vgg16")]
    assert list(result.columns) == AUC_COLUMNS


# --- summarise ---------------------------------------------------------------------------------------

CHECKS = (
    Floor("border ranks", "automated", {"feature": "border"}, "spearman", 0.8),
    Floor("colour ranks", "automated", {"feature": "color"}, "spearman", 0.8),
    Floor("asymmetry ranks", "automated", {"feature": "asymmetry"}, "spearman", None, note="reported only"),
    Floor("diameter ranks", "automated", {"feature": "diameter"}, "spearman", 0.5),
    Floor("baseline AUC", "auc", {"model": "baseline"}, "pooled_auc", 0.80, kind="target", per="backbone"),
)


def automated_table() -> pd.DataFrame:
    return pd.DataFrame({"feature": ["asymmetry", "border", "color"], "n_truth": [60, 60, 60], "n": [60, 58, 60],
                         "exact_agreement": [0.4, 0.3, 0.1], "spearman": [0.05, 0.85, 0.79]})


def test_summary_judges_each_check_and_reports_what_it_cannot():
    """border 0.85 >= 0.8 pass; colour 0.79 < 0.8 fail; asymmetry without a floor 'no floor'; the
    absent diameter row 'no value' with a note; the baseline AUC once per backbone (vgg16 0.70 fail,
    all 0.81 pass), counted by n_pooled. Break: `value > floor` for `value >= floor` in _status and a
    colour of exactly 0.8 fails (second assert)."""
    result = summarise({"automated": automated_table(), "auc": training_auc(auc_summary())}, CHECKS)
    assert list(result["status"]) == ["pass", "fail", "no floor", "no value", "fail", "pass"]
    assert list(result["check"])[-2:] == ["baseline AUC (vgg16)", "baseline AUC (all)"]
    assert list(result["kind"]) == ["floor"] * 4 + ["target"] * 2
    assert "no row where feature=diameter" in result.loc[3, "note"] and result.loc[2, "note"] == "reported only"
    assert (result.loc[0, "n_truth"], result.loc[0, "n"]) == (60, 58)
    assert result.loc[4, "n"] == 500 and pd.isna(result.loc[4, "n_truth"])
    at_floor = automated_table().assign(spearman=[0.05, 0.85, 0.8])
    assert summarise({"automated": at_floor}, CHECKS[1:2]).loc[0, "status"] == "pass"


def test_summary_nan_value_is_no_value_not_a_pass():
    """Break: `np.isnan(value)` check dropped from _status -> NaN >= 0.8 is False, reported 'fail'."""
    result = summarise({"automated": automated_table().assign(spearman=math.nan)}, CHECKS[:1])
    assert result.loc[0, "status"] == "no value"


def test_summary_errors_name_the_table_and_the_ambiguous_row():
    """Break: drop the `len(selected) > 1` check in _select -> the first row is judged silently."""
    with pytest.raises(ValueError, match="no table 'auc'"):
        summarise({"automated": automated_table()}, CHECKS)
    doubled = pd.concat([automated_table(), automated_table()], ignore_index=True)
    with pytest.raises(ValueError, match="2 rows where feature=border"):
        summarise({"automated": doubled}, CHECKS[:1])


def test_report_status_counts_for_the_truth_page():
    """The truth page's first line. Break: `value_counts(sort=False)` on `check` for `column` in
    crowdskin.report.status_counts -> one count per check."""
    summary = summarise({"automated": automated_table()}, CHECKS[:4])
    assert status_counts(summary) == "4 checks: 1 pass, 1 fail, 1 no floor, 1 no value"
    with pytest.raises(ValueError, match="missing column 'status'"):
        status_counts(summary.drop(columns="status"))


def test_floors_are_one_place_with_one_target():
    """Every floor lies in [0, 1] (all statistics are shares, correlations, AUCs or, for the targets,
    differences that should not be negative); the targets are the baseline's pooled AUC of 0.80 and
    the crowd layer's knowing the workers at least as well as Dawid-Skene; names are unique, so
    summary rows are."""
    assert all(f.floor is None or 0 <= f.floor <= 1 for f in FLOORS)
    assert [(f.table, f.row.get("estimator"), f.floor) for f in FLOORS if f.kind == "target"] == [
        ("auc", None, 0.80), ("annotators", LAYER_MINUS_DAWID_SKENE, 0.0), ("annotators", LAYER_MINUS_DAWID_SKENE, 0.0)]
    assert len({f.check for f in FLOORS}) == len(FLOORS)
    assert all(f.note for f in FLOORS if f.floor is None)  # an unjudged value says why


# --- input validation --------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "missing"), [
    (lambda: automated_vs_truth(perfect_automated().drop(columns="color_black"), TRUTH), "color_black"),
    (lambda: automated_vs_truth(perfect_automated(), TRUTH.drop(columns="colors")), "colors"),
    (lambda: annotations_vs_truth(pd.DataFrame({"image_id": [], "source": [], "feature": []}), TRUTH), "value"),
    (lambda: consensus_vs_truth(pd.DataFrame({"image_id": [], "source": [], "feature": [], "target": []}), TRUTH),
     "available"),
    (lambda: spread_vs_ambiguity(spread_targets().drop(columns="std"), TRUTH), "std"),
    (lambda: spread_vs_ambiguity(spread_targets(), TRUTH.drop(columns="ambiguity")), "ambiguity"),
    (lambda: funnel_vs_spammers(decisions().drop(columns="rejected_by"), WORKERS), "rejected_by"),
    (lambda: funnel_vs_spammers(decisions(), WORKERS.drop(columns="is_spammer")), "is_spammer"),
    (lambda: reliability_per_worker(RELIABILITY.drop(columns="reliability"), kept_answers(VOTES), TRUTH, WORKERS),
     "reliability"),
    (lambda: reliability_per_worker(RELIABILITY, kept_answers(VOTES).drop(columns="choice"), TRUTH, WORKERS),
     "choice"),
    (lambda: reliability_per_worker(RELIABILITY, kept_answers(VOTES), TRUTH.drop(columns="abnormal"), WORKERS),
     "abnormal"),
    (lambda: reliability_vs_truth(per_worker([0.5], [0.5], [False]).drop(columns="empirical_accuracy")),
     "empirical_accuracy"),
    (lambda: training_auc(auc_summary().drop(columns="pooled_auc")), "pooled_auc"),
    (lambda: summarise({"automated": automated_table().drop(columns="spearman")}, CHECKS[:1]), "spearman"),
])
def test_missing_column_is_named(call, missing):
    """Break: require_columns returns early (`return` as its first line) -> a KeyError or no error."""
    with pytest.raises(ValueError, match=f"missing column '{missing}'"):
        call()


def test_duplicated_truth_id_is_an_error():
    """Break: remove the duplicated check in _truth_images -> pandas' own ValueError, naming no id."""
    with pytest.raises(ValueError, match="duplicated image_id 'S1'"):
        automated_vs_truth(perfect_automated(), pd.concat([TRUTH, TRUTH.iloc[[1]]]))


def test_spearman_undefined_is_nan_without_warning():
    """Break: drop the constant-input guard -> scipy's ConstantInputWarning fails under -W error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
        assert math.isnan(spearman([1], [1]))
        assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


# --- the generated synthetic default -----------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_automated(tmp_path_factory) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The default synthetic set (schema defaults, seed 42 as config/config.yaml: the same 60 lesions
    as `make run`) and the automated table of each asymmetry variant, from its masks and images."""
    root = Path(tmp_path_factory.mktemp("synthetic"))
    generate(root, SyntheticSettings.from_config(section("synthetic"), seed=42))
    truth = pd.read_csv(root / "truth/images.csv")
    images = pd.DataFrame({"image_id": truth["image_id"], "dataset": "synthetic",
                           "image_path": [f"images/{i}.png" for i in truth["image_id"]],
                           "mask_path": [f"masks/{i}_segmentation.png" for i in truth["image_id"]]})
    tables = {variant: annotate_table(images, Settings.from_config(section("automated", {"variant": variant})),
                                      root=root)
              for variant in ("study", "paper")}
    return truth, tables


def test_automated_recovers_the_drawn_lesions(synthetic_automated):
    """Floors on the default synthetic set, each observed value minus a margin of about 0.1 (seeds
    1 and 7 gave values within that margin too; measured with the default config's variant `study`):

    - every lesion is scored (n = 60);
    - border: Spearman >= 0.75 (observed 0.852). Exact agreement is low (0.27) by design: the score
      counts abrupt segments among 8, not lobes, so it can only rank lesions as the lobe count does;
    - colour count: Spearman >= 0.65 (0.763). The count over-counts (exact agreement 0.13: a
      painted, noise-blurred sector's edge pixels fall near a second reference colour);
    - colour flags: white and blue-gray, far from the skin and the other colours, >= 0.9 (1.0,
      0.983); the mean over the six flags >= 0.6 (0.703: the browns, red and black are confused);
    - asymmetry: no floor for `study`, which reproduces the study code's background-driven
      centring (rho -0.04, exact 0.40 = the share of class 2, as it calls 52 of 60 lesions class 2);
      the `paper` variant (Appendix C as written) does recover it: exact >= 0.55 (0.65), rho >= 0.55
      (0.693).
    """
    truth, tables = synthetic_automated
    study = by_feature(automated_vs_truth(tables["study"], truth))
    assert (study["n"] == 60).all()
    assert study.loc["border", "spearman"] >= 0.75
    assert study.loc["color", "spearman"] >= 0.65
    assert study.loc["color_white", "exact_agreement"] >= 0.9
    assert study.loc["color_blue_gray", "exact_agreement"] >= 0.9
    assert study.loc[[f"color_{n}" for n in AUTOMATED_COLORS], "exact_agreement"].mean() >= 0.6
    paper = by_feature(automated_vs_truth(tables["paper"], truth))
    assert paper.loc["asymmetry", "exact_agreement"] >= 0.55
    assert paper.loc["asymmetry", "spearman"] >= 0.55


def test_floors_hold_on_the_default_synthetic_data(tmp_path, repo):
    """Every floored check before training passes on freshly generated data with config/config.yaml's
    `synthetic` settings and seed, run through the same package functions as the workflow's rules
    (ingest, automated ABC with the default variant, consensus targets and their spread, MTurk funnel,
    crowd labels' worker reliabilities). The AUC target needs training and is not judged here ("no value")."""
    config = load_config(repo / "config" / "config.yaml")
    generate(tmp_path / "synthetic", SyntheticSettings.from_config(config["synthetic"], seed=config["seed"]))
    ingested = ingest_all(config["ingest"], tmp_path)
    images = ingested.images
    automated = annotate_table(images[["image_id", "dataset", "image_path", "mask_path"]],
                               Settings.from_config({k: v for k, v in config["automated"].items()
                                                     if k != "shard_size"}), workers=2)
    annotations = pd.concat([ingested.annotations, to_annotations(automated, origin_file="automated.parquet")],
                            ignore_index=True)
    crowd = config["crowd"]
    targets = consensus_targets(annotations, images, features=crowd["target_features"],
                                multi_group=crowd["multi_group"])
    funnel = apply_filters(ingested.mturk_assignments, quarantined_assignments(ingested.quarantine),
                           FilterSettings.from_config(crowd["mturk"]))
    reliability = worker_reliability(funnel.kept, crowd["labels"]["method"], crowd["labels"]["n_iter"])
    truth_images = pd.read_csv(tmp_path / "synthetic/truth/images.csv")
    truth_workers = pd.read_csv(tmp_path / "synthetic/truth/workers.csv")
    tables = {
        "automated": automated_vs_truth(automated, truth_images),
        "annotations": annotations_vs_truth(annotations, truth_images),
        "consensus": consensus_vs_truth(targets, truth_images),
        "ambiguity": spread_vs_ambiguity(targets, truth_images),
        "mturk_funnel": funnel_vs_spammers(funnel.decisions, truth_workers),
        "dawid_skene": pd.concat([
            reliability_vs_truth(reliability_per_worker(reliability, funnel.kept, truth_images, truth_workers)),
            reliability_vs_truth(reliability_per_worker(worker_reliability(ingested.mturk_assignments),
                                                        ingested.mturk_assignments, truth_images, truth_workers),
                                 "all")], ignore_index=True),
        # what training gives is checked by the default run's truth_summary (make run)
        "auc": pd.DataFrame(columns=AUC_COLUMNS),
        "spread_heads": pd.DataFrame(columns=SPREAD_HEAD_COLUMNS),
    }
    summary = summarise(tables)
    untrained = [f for f in FLOORS if f.table not in TRAINED_TABLES]
    judged = summary[(summary["kind"] == "floor") & summary["floor"].notna() & ~summary["table"].isin(TRAINED_TABLES)]
    assert len(judged) == len([f for f in untrained if f.kind == "floor" and f.floor is not None])
    failed = judged[judged["status"] != "pass"]
    assert failed.empty, f"below the floor on the default data:\n{failed.to_string()}"
    assert list(summary.loc[summary["kind"] == "target", "status"]) == ["no value"]

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

from crowdskin.automated.annotate import Settings, annotate_table
from crowdskin.config import section
from crowdskin.synthetic import SyntheticSettings, generate
from crowdskin.tables import AUTOMATED_COLORS
from crowdskin.truth import (
    annotations_vs_truth,
    automated_vs_truth,
    consensus_vs_truth,
    funnel_vs_spammers,
    spearman,
)

# Four lesions: every feature and every colour flag varies, so every correlation is defined.
TRUTH = pd.DataFrame({
    "image_id": ["S0", "S1", "S2", "S3"],
    "abnormal": [0, 1, 0, 1],
    "asymmetry": [0, 1, 2, 2],
    "border": [0, 3, 5, 7],
    "color": [1, 2, 3, 4],
    "colors": ["red", "black|white", "blue_gray|dark_brown|light_brown",
               "black|blue_gray|light_brown|white"],
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


# --- input validation --------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "missing"), [
    (lambda: automated_vs_truth(perfect_automated().drop(columns="color_black"), TRUTH), "color_black"),
    (lambda: automated_vs_truth(perfect_automated(), TRUTH.drop(columns="colors")), "colors"),
    (lambda: annotations_vs_truth(pd.DataFrame({"image_id": [], "source": [], "feature": []}), TRUTH), "value"),
    (lambda: consensus_vs_truth(pd.DataFrame({"image_id": [], "source": [], "feature": [], "target": []}), TRUTH),
     "available"),
    (lambda: funnel_vs_spammers(decisions().drop(columns="rejected_by"), WORKERS), "rejected_by"),
    (lambda: funnel_vs_spammers(decisions(), WORKERS.drop(columns="is_spammer")), "is_spammer"),
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

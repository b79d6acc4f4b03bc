"""crowdskin.explain.scores and the explanation's truth checks, on tables whose answer is known
by construction. Each test names the break of the code that makes it fail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdskin import truth
from crowdskin.explain.scores import (
    Settings,
    compare_drops,
    compare_to_baseline,
    ensemble_scores,
    shortcut_scores,
    summarise_relevance,
)

SETTINGS = Settings(resamples=500, confidence=0.95, seed=0)


def _relevance(n: int = 200, shift: float = 0.0, model: str = "multitask", seed: int = 0) -> pd.DataFrame:
    """Two models on the same n lesions (two folds): the baseline, and `model` with `shift` more
    relevance in the lesion on every lesion."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.6, n)
    frame = pd.DataFrame({"fold": np.arange(n) % 2, "image_id": [f"L{i:03d}" for i in range(n)],
                          "label": np.arange(n) % 3 == 0, "lesion_area": 0.3})
    return pd.concat([frame.assign(model="baseline", backbone="smallcnn", relevance_lesion=base),
                      frame.assign(model=model, backbone="smallcnn", relevance_lesion=base + shift)],
                     ignore_index=True)


def test_the_summary_pools_every_lesion_with_a_bootstrap_interval():
    """Break: a mean of the fold means, or an interval that is not around the pooled mean."""
    relevance = _relevance()
    relevance.loc[(relevance["model"] == "baseline") & (relevance["fold"] == 0), "relevance_lesion"] = np.nan
    summary = summarise_relevance(relevance, SETTINGS).set_index("model")
    base = relevance[relevance["model"] == "baseline"]["relevance_lesion"]
    assert summary.loc["baseline", "lesions"] == base.notna().sum() == 100
    assert summary.loc["baseline", "relevance_lesion"] == pytest.approx(base.mean())
    row = summary.loc["multitask"]
    assert row["ci_low"] < row["relevance_lesion"] < row["ci_high"] and row["ci_high"] - row["ci_low"] < 0.1
    assert row["lesion_area"] == pytest.approx(0.3)


def test_a_model_that_looks_more_at_the_lesion_differs_from_the_baseline():
    """Break: pairing on the row order instead of the lesion, or Holm left out."""
    shifted = _relevance(shift=0.05)
    shuffled = pd.concat([shifted[shifted["model"] == "baseline"],
                          shifted[shifted["model"] == "multitask"].sample(frac=1, random_state=1)])
    row = compare_to_baseline(shuffled, SETTINGS).iloc[0]
    assert row["model"] == "multitask" and row["reference"] == "baseline" and row["pairs"] == 200
    assert row["difference"] == pytest.approx(0.05)
    assert row["ci_low"] == pytest.approx(0.05) and row["adjusted_ci_low"] == pytest.approx(0.05)
    same = compare_to_baseline(pd.concat([_relevance(), _relevance(model="other")
                                          .query("model == 'other'")]), SETTINGS)
    assert (same["difference"] == 0).all() and (same["holm_p"] == 1).all()
    noisy = _relevance(n=40)
    noisy.loc[noisy["model"] == "multitask", "relevance_lesion"] += np.random.default_rng(3).normal(0.02, 0.2, 40)
    table = compare_to_baseline(pd.concat([noisy, _relevance(n=40, shift=0.3, model="big")
                                           .query("model == 'big'")]), SETTINGS)
    assert (table["holm_p"] >= table["p_value"]).all()
    # an adjusted interval clear of 0 always has Holm p < 0.05 (here the large shift's does)
    clears = (table["adjusted_ci_low"] > 0) | (table["adjusted_ci_high"] < 0)
    assert clears.any() and (table.loc[clears, "holm_p"] < 0.05).all()


def _scored(n: int = 300, fooled: dict[str, float] | None = None, seed: int = 0) -> pd.DataFrame:
    """Models whose clean scores know the label; on the trap images a `fooled` share of each
    model's score follows the (reversed) marker instead."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 3 == 0).astype(float)
    marker_trap = labels == 0  # reversed: the marker on the benign lesions
    frames = []
    for model, weight in (fooled or {"baseline": 0.9, "multitask": 0.0}).items():
        clean = labels + rng.normal(0, 0.7, n)
        trap = (1 - weight) * clean + weight * (marker_trap + rng.normal(0, 0.1, n))
        frames.append(pd.DataFrame({"model": model, "backbone": "smallcnn", "fold": 0,
                                    "image_id": [f"L{i:03d}" for i in range(n)], "label": labels,
                                    "score": clean, "score_clean": clean, "score_trap": trap,
                                    "marker_trap": marker_trap, "relevance_marker_trap": 0.5 * weight,
                                    "relevance_marker_clean": 0.0, "relevance_lesion_clean": 0.6,
                                    "marker_area": 0.03}))
    return pd.concat(frames, ignore_index=True)


def test_a_model_fooled_by_the_marker_drops_on_the_trap_images():
    """Break: clean and trap swapped, or the drop's interval taken from one AUC's variance."""
    table = shortcut_scores(_scored(), SETTINGS).set_index("model")
    fooled, honest = table.loc["baseline"], table.loc["multitask"]
    assert fooled["auc_trap"] < 0.3 < 0.75 < fooled["auc_clean"]
    assert fooled["auc_drop"] == pytest.approx(fooled["auc_clean"] - fooled["auc_trap"])
    assert fooled["auc_drop_ci_low"] > 0.3 and fooled["auc_drop_p"] < 1e-6
    assert honest["auc_drop"] == pytest.approx(0.0) and honest["auc_drop_ci_low"] <= 0 <= honest["auc_drop_ci_high"]
    assert fooled["relevance_marker_trap"] == pytest.approx(0.45)


def test_falling_for_the_marker_less_than_the_baseline_is_a_negative_difference():
    """Break: the contrast's signs, e.g. model's drop plus the baseline's."""
    table = compare_drops(_scored(fooled={"baseline": 0.9, "multitask": 0.0, "half": 0.45}), SETTINGS)
    rows = table.set_index("model")
    assert rows.loc["multitask", "difference"] < -0.3 and rows.loc["multitask", "adjusted_ci_high"] < 0
    assert rows.loc["multitask", "difference"] < rows.loc["half", "difference"] < 0
    assert rows.loc["multitask", "difference"] == pytest.approx(
        rows.loc["multitask", "model_value"] - rows.loc["multitask", "reference_value"])


def test_an_ensemble_averages_its_members_scores_per_lesion():
    """Break: averaging over lesions, or keeping an ensemble whose member was not explained."""
    scored = _scored()
    ensembles = {"both": {"smallcnn": [["baseline", "smallcnn"], ["multitask", "smallcnn"]]},
                 "missing": {"smallcnn": [["baseline", "smallcnn"], ["absent", "smallcnn"]]}}
    averaged = ensemble_scores(scored, ensembles)
    assert set(averaged["model"]) == {"both"} and len(averaged) == 300
    first = scored[scored["image_id"] == "L000"]
    assert averaged.loc[averaged["image_id"] == "L000", "score_trap"].iloc[0] == pytest.approx(
        first["score_trap"].mean())


def test_the_truth_table_of_the_shortcut_measures_the_marker_against_the_reference():
    """Break: the rise unpaired over all trap images (not only those that show the marker)."""
    scored = _scored(fooled={"baseline": 0.9, "clean-reference": 0.0})
    scored.loc[~scored["marker_trap"], "relevance_marker_trap"] = 0.9  # no marker: must not count
    scores = shortcut_scores(scored, SETTINGS)
    table = truth.shortcut_vs_reference(scores, scored, "baseline", "clean-reference").set_index("model")
    assert table.loc["baseline", "marker_rise"] == pytest.approx(0.45)
    assert table.loc["baseline", "marker_auroc"] == pytest.approx(1.0)
    assert table.loc["baseline", "n"] == scored["marker_trap"].sum() / 2
    assert np.isnan(table.loc["clean-reference", "marker_rise"])
    explain_floors = [f for f in truth.FLOORS if f.table in ("relevance", "shortcut")]
    summary = truth.summarise({"shortcut": table.reset_index(), "relevance": truth.relevance_in_lesion(
        summarise_relevance(_relevance(), SETTINGS))}, explain_floors)
    assert len(summary) == len(explain_floors)
    assert len(summary) == 5 and (summary["status"] != "no value").all()

"""The report's pages on hand-made tables: the landing page's answer, the verdicts against the
randomized control, tables that say "none", figure pages under their captions."""

from __future__ import annotations

import base64
import math

import pandas as pd

from crowdskin import report

NAN = math.nan


def summary() -> pd.DataFrame:
    rows = [("baseline", "baseline", 0.880), ("multitask-crowd-border", "multitask", 0.905),
            ("multitask-student-color", "multitask", 0.890), ("ensemble-crowd", "ensemble", 0.899),
            ("random", "random", 0.898), ("crowdsim-retrain", "crowdsim-retrain", 0.870),
            ("crowdsim-incremental", "crowdsim-incremental", 0.860)]
    return pd.DataFrame([{"model": m, "kind": k, "source": "", "backbone": "vgg16", "n_folds": 5, "mean_auc": a + 0.01,
                          "sd_auc": 0.02, "pooled_auc": a, "pooled_ci_low": a - 0.03, "pooled_ci_high": a + 0.03,
                          "n_pooled": 500, "note": ""} for m, k, a in rows])


def comparison(model, reference, difference, holm_p, half=0.02):
    return {"model": model, "reference": reference, "backbone": "vgg16", "scope": "pooled", "n_test": 500,
            "n_abnormal": 175, "auc_model": 0.9, "auc_reference": 0.9 - difference, "difference": difference,
            "ci_low": difference - half / 2, "ci_high": difference + half / 2, "delong_z": 2.0, "delong_p": holm_p / 4,
            "holm_p": holm_p, "adjusted_ci_low": difference - half, "adjusted_ci_high": difference + half, "note": ""}


def comparisons(*, control_beaten: bool) -> pd.DataFrame:
    rows = [comparison("multitask-crowd-border", "baseline", 0.025, 0.02),
            comparison("multitask-student-color", "baseline", 0.010, 0.60),
            comparison("ensemble-crowd", "baseline", 0.019, 0.04),
            comparison("random", "baseline", 0.018, 0.04),
            comparison("crowdsim-retrain", "baseline", -0.010, 1.0),
            comparison("crowdsim-retrain", "crowdsim-incremental", 0.010, 1.0),
            comparison("multitask-crowd-border", "random", 0.007 if not control_beaten else 0.03,
                       1.0 if not control_beaten else 0.01),
            comparison("multitask-student-color", "random", -0.008, 1.0),
            comparison("ensemble-crowd", "random", 0.001, 1.0)]
    return pd.DataFrame(rows)


ROLES = {"controls": ["random"], "ensembles": ["ensemble-crowd"],
         "crowdsim": ["crowdsim-retrain", "crowdsim-incremental"]}


def test_the_landing_page_gives_the_answer_against_baseline_and_control():
    truth = pd.DataFrame({"check": ["a", "b", "c"], "status": ["pass", "fail", "no floor"]})
    page = report.summary_page("default", summary(), comparisons(control_beaten=False), truth=truth, **ROLES)
    assert "Baseline pooled out-of-fold AUC <b>0.880 (95 % CI 0.850–0.910)" in page
    assert "500 lesions tested, each once: 175 abnormal (35%), 325 normal" in page
    # the best model with heads is the best of those compared with the control, not the control itself
    assert "Best model with annotation heads: <b>multitask-crowd-border</b>" in page
    assert "Best ensemble: <b>ensemble-crowd</b>" in page
    best = page.split("Best model with annotation heads", 1)[1].split("</li>", 1)[0]
    assert "vs baseline +0.025" in best and "vs random +0.007" in best
    assert "<span class='gain'>vs baseline" in best and "<span class='none'>vs random" in best
    assert "CROWDSIM crowdsim-retrain" in page and "vs crowdsim-incremental +0.010" in page
    assert "1 fail: b" in page and "3 checks" in page
    # every category in order, the truth checks' only where they ran
    assert page.index("2. Data") < page.index("6. Models and ensembles") < page.index("9. Configuration")
    assert "8. Truth checks" in page
    assert "8. Truth checks" not in report.summary_page("real", summary(), comparisons(control_beaten=False),
                                                        **ROLES)


def test_the_verdict_says_which_gains_exceed_the_randomized_control():
    none = report.control_verdicts(comparisons(control_beaten=False), ["random"])
    assert len(none) == 1
    assert "no model with annotation heads and no ensemble beats the randomized control" in none[0]
    # the significant gains over the baseline are named as indistinguishable from a second head's
    assert "multitask-crowd-border, ensemble-crowd beat the baseline" in none[0]
    beaten = report.control_verdicts(comparisons(control_beaten=True), ["random"])
    assert beaten == ["On vgg16, gains that exceed the randomized control (random): multitask-crowd-border "
                      "(+0.030 (adjusted 95 % CI +0.010 to +0.050, Holm p 0.01))."]
    # without a control in the grid there is nothing to say
    assert report.control_verdicts(comparisons(control_beaten=True), []) == []


def test_a_comparison_reads_with_its_adjusted_interval_and_holm_p():
    row = comparison("m", "baseline", 0.0183, 0.0004)
    assert report.comparison_text(row) == "+0.018 (adjusted 95 % CI -0.002 to +0.038, Holm p < 0.001)"
    assert report.significant_gain(row) and not report.significant_gain(comparison("m", "b", -0.02, 0.001))
    view = report.comparisons_view(pd.DataFrame([row]))
    assert list(view.columns[:8]) == ["model", "reference", "backbone", "AUC model", "AUC reference", "difference",
                                      "adjusted 95 % CI", "Holm p"]


def test_an_empty_table_says_none_and_a_status_is_coloured():
    empty = report.table_section(pd.DataFrame(columns=["file", "rows"]), "Quarantined rows by reason")
    assert "None." in empty and "<table" not in empty
    coloured = report.table_section(pd.DataFrame({"check": ["a", "b"], "status": ["pass", "fail"]}), "Checks")
    assert "<td class='status-pass'>pass</td>" in coloured and "<td class='status-fail'>fail</td>" in coloured


def test_a_figure_page_shows_the_image_under_its_rendered_caption():
    png = b"\x89PNG\r\n\x1a\nnot really"
    page = report.figure_page("AUC per fold", "Folds of ``results/{{ run_name }}/scores``.", png,
                              {"run_name": "seed7"})
    assert "<h1>AUC per fold</h1>" in page and "results/seed7/scores" in page
    assert base64.b64encode(png).decode() in page
    assert page.index("results/seed7") < page.index("<img")

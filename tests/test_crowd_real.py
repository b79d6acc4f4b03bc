"""The crowd layer on the real public sample (../shared/data), through the ingest of
config/real-sample.yaml: the published ENHANCE correlations, the CROWDSIM funnel, group 7."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from crowdskin.config import section
from crowdskin.crowd import analysis, consensus, labels, mturk

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def real(shared_data, repo):
    from crowdskin.ingest import ingest_all

    config = yaml.safe_load((repo / "config" / "real-sample.yaml").read_text())
    return ingest_all(config["ingest"], shared_data), section("crowd", config["crowd"])


def test_crowd_label_correlation_reproduces_enhance_table3(real):
    ingested, settings = real
    targets = consensus.consensus_targets(ingested.annotations, ingested.images,
                                          features=settings["target_features"], multi_group=settings["multi_group"])
    table = analysis.label_correlation(targets, ingested.images)
    crowd = table[(table.source == "crowd") & (table.dataset == "isic2017")].set_index("feature")
    assert round(crowd.loc["asymmetry", "r"], 3) == 0.166
    assert round(crowd.loc["border", "r"], 3) == -0.017
    assert round(crowd.loc["color", "r"], 3) == 0.103
    assert (crowd["n"] == 1250).all()


def test_real_funnel_counts_every_exported_assignment_and_raises_accuracy(real, shared_data):
    """The funnel's removed and remaining counts match counts made from the decisions and the ingest.
    Fails if funnel_table counts undecided (kept) assignments as removed."""
    ingested, settings = real
    quarantined = mturk.quarantined_assignments(ingested.quarantine)
    exports = sorted((shared_data / "crowdsim" / "batch_results").glob("*.csv"))
    result = mturk.apply_filters(ingested.mturk_assignments, quarantined,
                                 mturk.FilterSettings.from_config(settings["mturk"]), mturk.export_ids(exports))
    funnel = result.funnel.set_index("rule")
    exported = sum(len(pd.read_csv(p)) for p in exports)
    assert funnel.loc["exported", "assignments"] == exported == 299
    assert funnel.loc["no_choice", "removed"] >= 150  # the whole Batch_4607797 has no choice
    # the funnel against counts made here: each assignment's decision, the ingest quarantine, the labels
    decided = result.decisions["rejected_by"]
    by_rule = decided.value_counts()
    assert set(by_rule.index) <= set(funnel.index[1:])
    assert funnel["removed"].iloc[1:].to_dict() == {rule: int(by_rule.get(rule, 0)) for rule in funnel.index[1:]}
    assert funnel["assignments"].iloc[-1] == decided.isna().sum()
    mturk_q = ingested.quarantine[ingested.quarantine.table == "mturk_assignments"]
    assert funnel.loc[["unparseable", "no_choice"], "removed"].sum() == mturk_q.groupby(["origin_file", "row"]).ngroups
    usable = ingested.mturk_assignments
    assert funnel.loc["impossible_triplet", "removed"] == (usable.candidate_a_label == usable.candidate_b_label).sum()
    before, after = funnel["accuracy"].iloc[0], funnel["accuracy"].iloc[-1]
    assert after > before + 0.15  # CROWDSIM reports about +20 points from its filters combined
    assert len(result.kept) == funnel["assignments"].iloc[-1] > 0
    table = labels.crowd_labels(result.kept, true_labels=labels.true_candidate_labels(
        ingested.mturk_assignments, ingested.images))
    assert table["true_label"].notna().all()  # every ISIC 2020 candidate's diagnosis is known


def test_group7_disagreement_auc(real):
    ingested, settings = real
    experiment = next(e for e in settings["disagreement"]["experiments"]
                      if e.get("annotator_group") == "student/2017-2018/group07")
    result = analysis.disagreement_auc(ingested.annotations, ingested.images, experiment,
                                       folds=settings["disagreement"]["folds"], seed=42).set_index("feature_set")
    assert result.loc["all annotations", "n_features"] == 30 and result.loc["all moments", "n_features"] == 20
    assert len(result) == 1 + 5 + 6 + 4 + 1
    assert (result["folds"] == 10).all() and (result["n_lesions"] >= 90).all()
    assert result["auc_mean"].between(0.5, 1.0).all()  # annotations carry signal about the diagnosis

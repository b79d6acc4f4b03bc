"""The crowd layer on hand-made tables: consensus, MTurk rules at their boundaries, labels, analyses."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from crowdskin.config import section
from crowdskin.crowd import analysis, consensus, figures, labels, mturk
from crowdskin.tables import CROWD_LABELS, TARGETS, kept_assignments_schema

FILTERS = mturk.FilterSettings.from_config(section("crowd")["mturk"])


def annotation_rows(scores: dict[str, list[float]], *, image_ids: list[str], group: str = "crowd/d",
                    source: str = "crowd", feature: str = "asymmetry", dataset: str = "d") -> pd.DataFrame:
    frames = []
    for annotator, values in scores.items():
        frames.append(pd.DataFrame({
            "image_id": image_ids, "dataset": dataset, "source": source, "feature": feature,
            "annotator_group": group, "annotator": annotator, "value": np.asarray(values, float),
        }))
    return pd.concat(frames, ignore_index=True).dropna(subset=["value"])


# --- consensus ------------------------------------------------------------------------------

def test_zscore_is_per_annotator_with_population_std():
    ids = ["L1", "L2", "L3", "L4"]
    ann = annotation_rows({"i": [0, 1, 2, 3], "ii": [10, 30, 20, 40]}, image_ids=ids)
    z = consensus.standardise_per_annotator(ann)
    i = z[z.annotator == "i"]["z"].to_numpy()
    expected_i = (np.array([0, 1, 2, 3]) - 1.5) / np.std([0, 1, 2, 3])  # ddof=0, as preprocessing.scale
    np.testing.assert_allclose(i, expected_i)
    ii = z[z.annotator == "ii"]["z"].to_numpy()
    np.testing.assert_allclose(ii, (np.array([10, 30, 20, 40]) - 25) / np.std([10, 30, 20, 40]))
    targets = consensus.consensus_targets(ann)
    np.testing.assert_allclose(targets.sort_values("image_id")["target"], (expected_i + ii) / 2)
    assert (targets["n_annotators"] == 2).all()


def test_constant_annotator_is_centred_not_divided_by_zero():
    ann = annotation_rows({"i": [2, 2, 2], "ii": [0, 1, 2]}, image_ids=["a", "b", "c"])
    z = consensus.standardise_per_annotator(ann)
    assert (z[z.annotator == "i"]["z"] == 0).all()
    assert np.isfinite(z["z"]).all()


def test_same_annotator_name_in_two_groups_is_standardised_separately():
    ids = ["a", "b", "c"]
    harsh = annotation_rows({"s1": [5, 6, 7]}, image_ids=ids, group="student/y/group01", source="student")
    mild = annotation_rows({"s1": [0, 1, 2]}, image_ids=ids, group="student/y/group02", source="student")
    z = consensus.standardise_per_annotator(pd.concat([harsh, mild]))
    a = z[z.annotator_group.str.endswith("01")]["z"].to_numpy()
    b = z[z.annotator_group.str.endswith("02")]["z"].to_numpy()
    np.testing.assert_allclose(a, b)  # same ranks, same z despite the 5-point offset


def test_multi_group_pool_and_first():
    ids = ["a", "b", "c", "d"]
    g1 = annotation_rows({"s1": [0, 1, 2, 3]}, image_ids=ids, group="student/y/group01", source="student")
    g2 = annotation_rows({"s1": [3, 2, 1, 0], "s2": [3, 2, 1, 0]}, image_ids=ids, group="student/y/group02",
                         source="student")
    both = pd.concat([g1, g2])
    pooled = consensus.consensus_targets(both, multi_group="pool").set_index("image_id")
    first = consensus.consensus_targets(both, multi_group="first").set_index("image_id")
    z1 = (np.arange(4) - 1.5) / np.std(np.arange(4))
    np.testing.assert_allclose(first["target"], z1)
    np.testing.assert_allclose(pooled["target"], (z1 - 2 * z1) / 3)
    assert (pooled["n_annotators"] == 3).all() and (pooled["n_groups"] == 2).all()
    assert (first["n_annotators"] == 1).all() and (first["n_groups"] == 1).all()
    with pytest.raises(ValueError, match="multi_group"):
        consensus.consensus_targets(both, multi_group="average")


def test_disagreement_moments_match_scipy_and_flat_lesions_are_nan():
    rng = np.random.default_rng(1)
    ids = [f"L{k}" for k in range(30)]
    scores = {f"s{k}": rng.integers(0, 5, 30).astype(float) for k in range(1, 7)}
    scores["s1"][0] = 10.0  # make sure lesion L0 is skewed
    ann = annotation_rows(scores, image_ids=ids, source="student", group="student/y/group07")
    targets = consensus.consensus_targets(ann).set_index("image_id").loc[ids]
    z = consensus.standardise_per_annotator(ann).pivot(index="image_id", columns="annotator", values="z").loc[ids]
    np.testing.assert_allclose(targets["std"], z.std(axis=1, ddof=0))
    defined = z.std(axis=1, ddof=0) > 1e-9
    np.testing.assert_allclose(targets.loc[defined, "skewness"], stats.skew(z[defined], axis=1, bias=True))
    np.testing.assert_allclose(targets.loc[defined, "kurtosis"], stats.kurtosis(z[defined], axis=1, bias=True))
    single = consensus.consensus_targets(annotation_rows({"i": [1, 2]}, image_ids=["a", "b"]))
    assert single["skewness"].isna().all() and (single["std"] == 0).all()


def test_unannotated_lesions_get_unavailable_rows():
    ann = annotation_rows({"i": [0, 1], "ii": [1, 0]}, image_ids=["a", "b"])
    images = pd.DataFrame({"image_id": ["a", "b", "c", "x"], "dataset": ["d", "d", "d", "other"],
                           "abnormal": [0, 1, 1, 0]})
    targets = consensus.consensus_targets(ann, images).set_index("image_id")
    assert set(targets.index) == {"a", "b", "c"}  # dataset 'other' has no crowd annotations
    assert not targets.loc["c", "available"] and targets.loc["c", "n_annotators"] == 0
    assert np.isnan(targets.loc["c", "target"])
    TARGETS.validate(targets.reset_index())


# --- MTurk rules ----------------------------------------------------------------------------

def assignment(idx: int, *, worker: str = "W1", seconds: float = 100.0, minute: int = 0,
               confidence: str | None = "confident", anchor: int = 1, a: int = 1, b: int = 0, choice: str = "A",
               rate: float = 1.0, total: int = 10, hit: str | None = None) -> dict:
    accept = pd.Timestamp("2021-11-22 12:00", tz="UTC") + pd.Timedelta(minutes=minute)
    return {
        "batch": "1", "hit_id": hit or f"H{idx}", "assignment_id": f"A{idx}", "worker_id": worker,
        "anchor_id": f"anchor{idx}", "anchor_label": anchor, "candidate_a_id": f"ca{idx}", "candidate_a_label": a,
        "candidate_b_id": f"cb{idx}", "candidate_b_label": b, "choice": choice, "confidence": confidence,
        "work_time_s": seconds, "accept_time": accept, "submit_time": accept + pd.Timedelta(seconds=seconds),
        "approval_rate": rate, "approval_approved": round(rate * total), "approval_total": total,
        "origin_file": "batch.csv", "origin_row": idx,
    }


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in ("anchor_label", "candidate_a_label", "candidate_b_label"):
        df[c] = df[c].astype("Int8")
    df["approval_total"] = df["approval_total"].astype("Int64")
    return df


@pytest.mark.parametrize(
    ("seconds", "rejected"), [(59.9, True), (60.0, False), (60.1, False), (5000.0, False)],
)
def test_time_rule_first_hit_boundary_60s(seconds, rejected):
    df = frame([assignment(1, seconds=seconds, minute=0), assignment(2, seconds=100, minute=5)])
    flags = mturk.rule_time_on_task(df, FILTERS)
    assert bool(flags.iloc[0]) is rejected and not flags.iloc[1]


@pytest.mark.parametrize(
    ("seconds", "rejected"), [(9.9, True), (10.0, False), (200.0, False), (200.1, True)],
)
def test_time_rule_later_hit_boundaries_10s_and_200s(seconds, rejected):
    df = frame([assignment(1, seconds=100, minute=0), assignment(2, seconds=seconds, minute=5)])
    flags = mturk.rule_time_on_task(df, FILTERS)
    assert bool(flags.iloc[1]) is rejected and not flags.iloc[0]


def test_first_hit_is_by_accept_time_per_worker_not_row_order():
    df = frame([assignment(1, seconds=30, minute=10), assignment(2, seconds=30, minute=0),
                assignment(3, worker="W2", seconds=30, minute=20)])
    first = mturk.first_hit_of_worker(df)
    assert list(first) == [False, True, True]
    flags = mturk.rule_time_on_task(df, FILTERS)
    assert list(flags) == [False, True, True]  # 30 s: fine later, too fast for a first HIT


def test_approval_rule_threshold_and_no_history():
    df = frame([assignment(1, rate=0.95), assignment(2, rate=0.949), assignment(3, rate=0.0, total=0)])
    default = mturk.rule_approval_rate(df, FILTERS)
    assert list(default) == [False, True, False]  # exactly the threshold is kept; 0/0 kept by default
    strict = mturk.rule_approval_rate(df, replace(FILTERS, reject_no_history=True))
    assert list(strict) == [False, True, True]
    off = mturk.rule_approval_rate(df, replace(FILTERS, min_approval_rate=None))
    assert not off.any()


def test_confidence_and_impossible_triplet_rules():
    df = frame([assignment(1, confidence="very uncertain"), assignment(2, confidence="uncertain"),
                assignment(3, confidence="neutral"), assignment(4, confidence="confident"),
                assignment(5, confidence="very confident"), assignment(6, confidence=None)])
    assert list(mturk.rule_confidence(df, FILTERS)) == [True, True, False, False, True, False]
    custom = replace(FILTERS, excluded_confidence=("neutral",))
    assert list(mturk.rule_confidence(df, custom)) == [False, False, True, False, False, False]
    triplets = frame([assignment(1, a=0, b=0), assignment(2, a=1, b=1), assignment(3, a=1, b=0)])
    assert list(mturk.rule_impossible_triplet(triplets, FILTERS)) == [True, True, False]


def test_accuracy_is_share_of_choices_with_the_anchors_diagnosis():
    df = frame([assignment(1, anchor=1, a=1, b=0, choice="A"), assignment(2, anchor=1, a=1, b=0, choice="B"),
                assignment(3, anchor=0, a=1, b=0, choice="B"), assignment(4, anchor=0, a=1, b=0, choice="A")])
    assert list(mturk.is_correct(df)) == [True, False, True, False]
    assert mturk.accuracy(df) == 0.5


def test_funnel_accounts_for_every_assignment_in_order():
    """Each assignment is charged to its first broken rule and the funnel's removed counts match the
    decisions. Fails if funnel_table counts undecided (kept) assignments as removed."""
    rows = [
        assignment(1, minute=0, seconds=100),                                # kept
        assignment(2, minute=1, a=0, b=0, confidence="uncertain"),           # impossible (first rule) and confidence
        assignment(3, minute=2, confidence="very confident", seconds=500),   # confidence and time: confidence first
        assignment(4, minute=3, seconds=5),                                  # time
        assignment(5, worker="W2", minute=0, seconds=100, rate=0.5),         # approval
        assignment(6, worker="W3", minute=0, seconds=100, choice="B"),       # kept, wrong answer
    ]
    quarantine = pd.DataFrame({
        "stage": "ingest", "table": "mturk_assignments", "origin_file": "old.csv",
        "row": pd.array([1, 2, 2, 3], dtype="Int64"), "column": "x", "raw_value": None,
        "reason": ["no choice recorded", "unparseable time", "unparseable rate", "conflicting choices"],
        "record_id": ["Q1", "Q2", "Q2", "Q3"],
    })
    q = mturk.quarantined_assignments(quarantine)
    assert dict(zip(q["assignment_id"], q["step"], strict=True)) == {
        "Q1": "no_choice", "Q2": "unparseable", "Q3": "unparseable"}
    result = mturk.apply_filters(frame(rows), q, FILTERS)
    f = result.funnel.set_index("rule")
    assert list(f.index) == ["exported", "unparseable", "no_choice", "impossible_triplet", "confidence",
                             "time_on_task", "approval_rate"]
    assert f.loc["exported", "assignments"] == 9
    decided = result.decisions.set_index("assignment_id")["rejected_by"]
    assert decided.fillna("kept").to_dict() == {
        "Q1": "no_choice", "Q2": "unparseable", "Q3": "unparseable", "A1": "kept", "A2": "impossible_triplet",
        "A3": "confidence", "A4": "time_on_task", "A5": "approval_rate", "A6": "kept"}
    # the funnel against the decisions counted here, not against its own previous row
    by_rule = decided.value_counts()
    assert f["removed"].iloc[1:].to_dict() == {rule: int(by_rule.get(rule, 0)) for rule in f.index[1:]}
    assert f["assignments"].iloc[-1] == decided.isna().sum() == 2
    assert list(f["removed"].iloc[1:]) == [2, 1, 1, 1, 1, 1]
    assert f.loc["approval_rate", "assignments"] == len(result.kept) == 2
    assert f.loc["approval_rate", "accuracy"] == 0.5 and f.loc["approval_rate", "workers"] == 2
    flags = result.decisions.set_index("assignment_id")
    assert flags.loc["A2", "flag_confidence"] and flags.loc["A3", "flag_time_on_task"]  # all broken rules visible
    kept_assignments_schema(FILTERS.rules).validate(result.kept)


def test_settings_reject_unknown_rules_and_keys():
    with pytest.raises(ValueError, match="unknown rule"):
        mturk.FilterSettings.from_config({**section("crowd")["mturk"], "rules": ["gold_questions"]})
    with pytest.raises(ValueError, match="unknown setting"):
        mturk.FilterSettings.from_config({**section("crowd")["mturk"], "min_rate": 0.9})
    with pytest.raises(ValueError, match="missing setting"):
        mturk.FilterSettings.from_config({"rules": ["confidence"]})  # defaults come from the schema only
    defaults = section("crowd")
    assert defaults["mturk"]["first_hit_min_s"] == 60 and defaults["labels"]["method"] == "dawid_skene"
    with pytest.raises(ValueError, match="crowd.mturk.later_hit_max_s"):
        section("crowd", {"mturk": {"later_hit_max_s": "long"}})


# --- labels -------------------------------------------------------------------------------

def test_majority_vote_ties_give_no_label():
    votes = pd.DataFrame({"worker": ["w1", "w2", "w3", "w1"], "task": ["x", "x", "y", "z"], "label": [1, 0, 1, 0]})
    mv = labels.majority_vote(votes)
    assert pd.isna(mv.loc["x", "label_majority"]) and mv.loc["x", "agreement"] == 0.5
    assert mv.loc["y", "label_majority"] == 1 and mv.loc["z", "label_majority"] == 0


def simulate_answers(seed: int, n_candidates: int = 60, n_tasks: int = 400) -> tuple[pd.DataFrame, pd.Series]:
    """Workers of varied quality choose between a same-diagnosis and an other-diagnosis candidate;
    a few careful workers, many who mostly pick the dissimilar one."""
    rng = np.random.default_rng(seed)
    truth = pd.Series(rng.integers(0, 2, n_candidates), index=[f"C{k:03d}" for k in range(n_candidates)])
    skill = {f"good{k}": 0.9 for k in range(4)} | {f"poor{k}": 0.3 for k in range(5)}
    workers = list(skill)
    rows = []
    for t in range(n_tasks):
        anchor = int(rng.integers(0, 2))
        same = rng.choice(truth.index[truth == anchor])
        other = rng.choice(truth.index[truth != anchor])
        for w in rng.choice(workers, 3, replace=False):
            right = rng.random() < skill[w]
            rows.append(assignment(len(rows), worker=w, anchor=anchor, a=anchor, b=1 - anchor,
                                   choice="A" if right else "B", hit=f"H{t}")
                        | {"candidate_a_id": same, "candidate_b_id": other})
    return frame(rows), truth


def test_reliability_aggregation_beats_majority_vote_when_worker_quality_varies():
    answers, truth = simulate_answers(seed=3)
    table = labels.crowd_labels(answers, true_labels=truth)
    CROWD_LABELS.validate(table)
    acc = labels.label_accuracy(table).set_index("method")
    assert acc.loc["dawid_skene", "accuracy_all"] > acc.loc["majority_vote", "accuracy_all"] + 0.2
    assert acc.loc["dawid_skene", "accuracy_all"] > 0.9
    glad = labels.label_accuracy(labels.crowd_labels(answers, true_labels=truth, method="glad"))
    assert glad["accuracy_all"].iloc[1] >= 0.8


def test_true_labels_prefer_the_image_table():
    df = frame([assignment(1, a=1, b=0)])
    images = pd.DataFrame({"image_id": ["ca1"], "abnormal": pd.array([0], dtype="Int8")})
    truth = labels.true_candidate_labels(df, images)
    assert truth["ca1"] == 0 and truth["cb1"] == 0
    assert labels.true_candidate_labels(df)["ca1"] == 1


# --- analyses -----------------------------------------------------------------------------

def test_label_correlation_and_source_agreement_use_pearson_on_shared_lesions():
    rng = np.random.default_rng(0)
    ids = [f"L{k}" for k in range(40)]
    abnormal = rng.integers(0, 2, 40)
    crowd = annotation_rows({"i": abnormal + rng.normal(0, 1, 40), "ii": rng.normal(0, 1, 40)}, image_ids=ids)
    student = annotation_rows({"s1": abnormal[:30] + rng.normal(0, 2, 30)}, image_ids=ids[:30], source="student",
                              group="student/y/group01")
    images = pd.DataFrame({"image_id": ids, "dataset": "d", "abnormal": pd.array(abnormal, dtype="Int8")})
    targets = consensus.consensus_targets(pd.concat([crowd, student]), images)
    corr = analysis.label_correlation(targets, images).set_index("source")
    expected = targets[(targets.source == "crowd")].set_index("image_id").loc[ids, "target"]
    r, p = stats.pearsonr(expected, abnormal)
    assert corr.loc["crowd", "r"] == pytest.approx(r) and corr.loc["crowd", "p_value"] == pytest.approx(p)
    assert corr.loc["crowd", "n"] == 40 and corr.loc["student", "n"] == 30
    agree = analysis.source_agreement(targets)
    assert len(agree) == 1 and agree["n"].iloc[0] == 30
    counts = analysis.annotation_counts(pd.concat([crowd, student])).set_index("source")
    assert counts.loc["crowd", "asymmetry"] == 40 and counts.loc["student", "asymmetry"] == 30


def test_disagreement_feature_sets_for_six_students_five_features():
    rng = np.random.default_rng(7)
    ids = [f"L{k}" for k in range(60)]
    abnormal = np.array([0, 1] * 30)
    features = ["asymmetry", "color", "border", "dermo", "blue"]
    frames = [annotation_rows({f"s{s}": abnormal * (f != "blue") + rng.normal(0, 1, 60) for s in range(1, 7)},
                              image_ids=ids, feature=f, source="student", group="student/y/group07") for f in features]
    ann = pd.concat(frames)
    ann = ann[~((ann.image_id == "L0") & (ann.annotator == "s3") & (ann.feature == "blue"))]  # one missing score
    images = pd.DataFrame({"image_id": ids, "dataset": "d", "abnormal": pd.array(abnormal, dtype="Int8")})
    result = analysis.disagreement_auc(ann, images, {"name": "g7", "annotator_group": "student/y/group07",
                                                     "features": features}, folds=5, seed=0).set_index("feature_set")
    sizes = result["n_features"]
    assert sizes["all annotations"] == 30 and sizes["all moments"] == 20
    assert all(sizes[f"feature type: {f}"] == 6 for f in features)
    assert all(sizes[f"annotator: s{k}"] == 5 for k in range(1, 7))
    assert all(sizes[f"moment: {m}"] == 5 for m in analysis.MOMENTS)
    assert (result["n_lesions"] == 59).all() and (result["lesions_left_out"] == 1).all()
    assert result.loc["all annotations", "auc_mean"] > 0.8  # signal in four of five features
    assert result.loc["feature type: blue", "auc_mean"] < result.loc["feature type: asymmetry", "auc_mean"]
    with pytest.raises(ValueError, match="no annotations"):
        analysis.disagreement_auc(ann, images, {"name": "x", "annotator_group": "nope", "features": features},
                                  folds=5, seed=0)
    table = analysis.disagreement_table(ann, images, [{"name": "g7", "annotator_group": "student/y/group07",
                                                        "features": features}], folds=5, seed=0)
    assert list(table.columns) == analysis.DISAGREEMENT_COLUMNS and len(table) == len(result)
    empty = analysis.disagreement_table(ann, images, [], folds=5, seed=0)
    assert empty.columns.tolist() == analysis.DISAGREEMENT_COLUMNS


def test_spammer_detection_precision_and_recall():
    decisions = pd.DataFrame({
        "usable": True, "worker_id": ["s", "s", "c", "c"],
        "rejected_by": pd.array(["time_on_task", "time_on_task", "time_on_task", pd.NA], dtype="string"),
        "flag_time_on_task": [True, True, True, False],
    })
    workers = pd.DataFrame({"worker_id": ["s", "c"], "is_spammer": [True, False]})
    out = analysis.spammer_detection(decisions, workers, ["time_on_task"]).set_index(["level", "rule"])
    assert out.loc[("assignment", "all rules"), "precision"] == pytest.approx(2 / 3)
    assert out.loc[("assignment", "all rules"), "recall"] == 1.0
    assert out.loc[("worker", "all rules"), "precision"] == 1.0
    with pytest.raises(ValueError, match="missing from the truth"):
        analysis.spammer_detection(decisions, workers[workers.worker_id == "s"], ["time_on_task"])


def test_figures_are_written(tmp_path):
    ids = [f"L{k}" for k in range(20)]
    abnormal = np.array([0, 1] * 10)
    ann = pd.concat([annotation_rows({"i": abnormal + np.arange(20) / 20.0, "ii": np.arange(20.0)}, image_ids=ids,
                                     feature=f)
                     for f in ("asymmetry", "border")])
    images = pd.DataFrame({"image_id": ids, "dataset": "d", "abnormal": pd.array(abnormal, dtype="Int8")})
    targets = consensus.consensus_targets(ann, images)
    rain = figures.raincloud(targets, images, tmp_path / "rain.png", seed=0)
    heat = figures.agreement_heatmap(analysis.source_agreement(targets), tmp_path / "heat.png")
    for path in (rain, heat):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_the_funnel_names_its_steps_with_the_runs_thresholds_not_setting_names():
    """A reader of the funnel sees "first HIT under 60 s", not the config key first_hit_min_s."""
    strict = replace(FILTERS, first_hit_min_s=75.0, min_approval_rate=0.97, reject_no_history=True)
    described = mturk.describe_steps(strict)
    assert "75 s" in described["time_on_task"] and "first_hit_min_s" not in described["time_on_task"]
    assert "97%" in described["approval_rate"] and "min_approval_rate" not in described["approval_rate"]
    assert "rejected" in described["approval_rate"]
    assert "no approval-rate filter" in mturk.describe_steps(replace(FILTERS, min_approval_rate=None))["approval_rate"]
    assert not [text for text in described.values() if re.search(r"\b[a-z]+_[a-z_]+\b", text)], described

"""The kinds that learn each annotator, without Keras: which answers each job's annotator head
learns, with which weights, and what the label's loss leaves to the head; the crowd stage's votes
table; the summary of what the heads learned; and the truth checks of the learned annotators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdskin import truth
from crowdskin.config import section
from crowdskin.crowd.labels import annotator_votes
from crowdskin.evaluate.annotators import summarise_annotators
from crowdskin.train.examples import (
    ExampleNotes,
    ExamplesError,
    balanced_class_weights,
    job_annotator_answers,
    job_examples,
    trained_labels,
)
from crowdskin.train.kinds import AnnotatorAnswers, kind_of
from crowdskin.train.kinds.annotators import agreement, expertise_weights
from crowdskin.train.settings import job_settings
from crowdskin.train.splits import make_folds
from crowdskin.train.tasks import task_grid

TRAIN = section("train", {"multitask": {"sources": ["student"], "features": ["border"]},
                          "annotators": {"votes": {"enabled": True, "answers": "all"},
                                         "scores": {"sources": ["student"], "features": ["border"]},
                                         "weights": ["equal", "expertise"]}})
TASKS = {task.name: task for task in task_grid(TRAIN)}
WORKERS = ("W1", "W2", "W3")


@pytest.fixture
def data():
    """40 lesions; a crowd pool of every fourth, each voted on by W1 (always right), W2 (always
    wrong) and, on every other pool image, W3; W3's votes are not kept by the funnel. Three students
    score every lesion's border: s1 as the truth, s2 the truth + 1, s3 at random."""
    n = 40
    ids = [f"I{i:03d}" for i in range(n)]
    abnormal = [int(i % 3 == 0) for i in range(n)]
    lesions = pd.DataFrame({"image_id": ids, "abnormal": abnormal, "group_id": pd.NA})
    folds = make_folds(lesions, scheme="kfold", n_folds=4, seed=0)
    pool = list(range(0, n, 4))
    votes = []
    for j, i in enumerate(pool):
        votes.append({"image_id": ids[i], "worker_id": "W1", "vote": abnormal[i], "kept": True})
        votes.append({"image_id": ids[i], "worker_id": "W2", "vote": 1 - abnormal[i], "kept": True})
        if j % 2 == 0:
            votes.append({"image_id": ids[i], "worker_id": "W3", "vote": 1, "kept": False})
    votes = pd.DataFrame(votes).assign(reliability_kept=lambda d: d["worker_id"].map({"W1": 0.9, "W2": 0.6}),
                                       reliability_all=lambda d: d["worker_id"].map({"W1": 0.9, "W2": 0.6, "W3": 0.5}))
    crowd = pd.DataFrame({"image_id": [ids[i] for i in pool], "label_majority": pd.array([pd.NA] * len(pool),
                                                                                        dtype="Int8")})
    rng = np.random.default_rng(0)
    truth_border = rng.integers(0, 6, n)
    annotations = pd.DataFrame([
        {"image_id": ids[i], "source": "student", "feature": "border", "annotator_group": "student/2020/group01",
         "annotator": name, "value": float(value)}
        for i in range(n)
        for name, value in (("s1", truth_border[i]), ("s2", truth_border[i] + 1), ("s3", rng.integers(0, 6)))
    ])
    return lesions, folds, crowd, votes, annotations


def _job(data, name, fold=0):
    lesions, folds, crowd, votes, annotations = data
    task = TASKS[name]
    settings = job_settings(TRAIN, task, "vgg16")
    examples, notes = job_examples(folds, lesions, task, fold, settings=settings, crowd_labels=crowd, votes=votes)
    answers = job_annotator_answers(examples, task, fold, notes, settings=settings, votes=votes,
                                    annotations=annotations)
    return examples, notes, answers


def test_the_grid_has_each_annotator_kind_with_its_weighting_and_references():
    assert {"crowdsim-annotators", "crowdsim-annotators-expertise", "annotators-student-border",
            "annotators-student-border-expertise"} <= set(TASKS)
    refs = {name: kind_of(TASKS[name].kind).references(TASKS[name], list(TASKS)) for name in TASKS}
    assert refs["crowdsim-annotators"] == ["crowdsim-retrain"]
    assert refs["crowdsim-annotators-expertise"] == ["crowdsim-annotators"]
    assert refs["annotators-student-border"] == ["multitask-student-border"]
    assert refs["annotators-student-border-expertise"] == ["annotators-student-border"]
    # the students' head learns annotations: compared with the randomized control too
    from crowdskin.evaluate.ensemble import extra_comparisons

    pairs = extra_comparisons(list(TASKS.values()), [])
    assert ("annotators-student-border", "random") in pairs and ("crowdsim-annotators", "random") not in pairs
    # off by default: the schema's defaults add no task
    assert not [t for t in task_grid(section("train")) if kind_of(t.kind).annotator_model]


def test_the_crowd_layer_learns_the_votes_of_the_pools_training_images_only(data):
    examples, notes, answers = _job(data, "crowdsim-annotators")
    pool_train = examples[(examples["split"] == "train") & (examples["label_source"] == "crowd")]
    # every pool training image with a vote trains, though no majority label exists for any
    assert len(pool_train) > 0 and notes.counts["crowd_train_without_crowd_label"] == 0
    assert set(answers.answers["image_id"]) == set(pool_train["image_id"])
    assert list(answers.annotators["annotator"]) == list(WORKERS)  # all answers: W3's too
    assert (answers.annotators["weight"] == 1.0).all()
    # the label's loss never sees a crowd image; the expert images keep theirs
    labels = trained_labels(examples, TASKS["crowdsim-annotators"])
    crowd_rows = (examples["label_source"] == "crowd").to_numpy()
    assert np.isnan(labels[crowd_rows]).all() and not np.isnan(labels[~crowd_rows]).any()
    weights = balanced_class_weights(labels[(examples["split"] == "train").to_numpy()])
    assert weights == balanced_class_weights(examples.loc[(examples["split"] == "train") & ~crowd_rows, "label"])
    # the matrix: one column per worker, a missing vote unavailable
    values, available = answers.matrix(pool_train["image_id"].tolist())
    assert values.shape == (len(pool_train), 3)
    w2 = answers.annotators["annotator"].tolist().index("W2")
    lesions = data[0].set_index("image_id")["abnormal"]
    assert available[:, w2].all()
    assert (values[:, w2] == 1 - lesions[pool_train["image_id"]].to_numpy()).all()
    assert 0 < available[:, 2].sum() < len(pool_train)  # W3 voted on every other pool image


def test_kept_answers_leave_the_unkept_worker_out(data):
    train = section("train", {**TRAIN, "annotators": {**TRAIN["annotators"], "votes": {"enabled": True,
                                                                                       "answers": "kept"}}})
    lesions, folds, crowd, votes, annotations = data
    task = {t.name: t for t in task_grid(train)}["crowdsim-annotators"]
    settings = job_settings(train, task, "vgg16")
    examples, notes = job_examples(folds, lesions, task, 0, settings=settings, crowd_labels=crowd, votes=votes)
    answers = job_annotator_answers(examples, task, 0, notes, settings=settings, votes=votes)
    assert list(answers.annotators["annotator"]) == ["W1", "W2"]
    assert settings != job_settings(TRAIN, task, "vgg16")  # a change of answers re-trains the task


def test_expertise_weights_follow_dawid_skene_and_agreement(data):
    _, _, answers = _job(data, "crowdsim-annotators-expertise")
    weight = answers.annotators.set_index("annotator")["weight"]
    # 2r - 1: W1 0.8, W2 0.2, W3 0 (chance), over their mean 1/3
    assert weight.to_dict() == pytest.approx({"W1": 2.4, "W2": 0.6, "W3": 0.0})
    assert expertise_weights(pd.Series([np.nan, -0.2])).tolist() == [1.0, 1.0]  # nothing known: equal

    examples, _, scores = _job(data, "annotators-student-border-expertise")
    table = scores.annotators.set_index("annotator")
    assert table.loc["student/2020/group01/s3", "agreement"] < 0.5 < table.loc["student/2020/group01/s1", "agreement"]
    assert table["weight"].mean() == pytest.approx(1.0)
    assert table["weight"].idxmin() == "student/2020/group01/s3"


def test_the_annotator_head_learns_raw_scores_standardised_once_and_no_test_lesion(data):
    examples, notes, answers = _job(data, "annotators-student-border")
    assert answers.model == "affine"
    test_ids = set(examples.loc[examples["split"] == "test", "image_id"])
    assert not test_ids & set(answers.answers["image_id"])
    train_ids = examples.loc[examples["split"] == "train", "image_id"].tolist()
    values, available = answers.matrix(train_ids)
    assert available.all()
    # one standardisation for every annotator: s2 stays s1 + 1 (in units of the pooled spread)
    s1, s2 = values[:, 0], values[:, 1]
    assert np.allclose((s2 - s1) * answers.spread, 1.0)
    raw = answers.answers[answers.answers["image_id"].isin(train_ids)]["answer"]
    assert answers.center == pytest.approx(raw.mean())
    assert notes.counts["annotators"] == 3
    # the test lesions have no answer at all
    _, none = answers.matrix(sorted(test_ids))
    assert not none.any()


def test_a_missing_table_or_column_is_named(data):
    lesions, folds, crowd, votes, annotations = data
    task = TASKS["annotators-student-border"]
    settings = job_settings(TRAIN, task, "vgg16")
    examples, notes = job_examples(folds, lesions, task, 0, settings=settings)
    with pytest.raises(ExamplesError, match="annotations table"):
        job_annotator_answers(examples, task, 0, notes, settings=settings)
    with pytest.raises(ExamplesError, match=r"lacks column\(s\) \['annotator'\]"):
        job_annotator_answers(examples, task, 0, notes, settings=settings,
                              annotations=annotations.drop(columns="annotator"))
    task = TASKS["crowdsim-annotators"]
    settings = job_settings(TRAIN, task, "vgg16")
    with pytest.raises(ExamplesError, match="reliability_all"):
        job_examples(folds, lesions, task, 0, settings=settings, crowd_labels=crowd,
                     votes=votes.drop(columns="reliability_all"))


def test_agreement_is_the_correlation_with_the_others_mean():
    scores = pd.DataFrame({"image_id": [f"I{i}" for i in range(6)] * 3,
                           "annotator": ["a"] * 6 + ["b"] * 6 + ["c"] * 6,
                           "value": [0, 1, 2, 3, 4, 5] + [1, 2, 3, 4, 5, 6] + [5, 4, 3, 2, 1, 0]})
    result = agreement(scores)
    # a against mean(b, c) = 3 everywhere: constant, undefined
    assert np.isnan(result["a"])
    others_of_c = (np.arange(6) + np.arange(1, 7)) / 2
    assert result["c"] == pytest.approx(np.corrcoef(np.arange(5, -1, -1), others_of_c)[0, 1])


def test_matrix_keeps_the_annotators_order_and_averages_repeated_answers():
    answers = AnnotatorAnswers("confusion", pd.DataFrame({"annotator": ["b", "a"], "n_answers": [1, 2],
                                                          "weight": [1.0, 1.0]}),
                               pd.DataFrame({"image_id": ["x", "x", "y"], "annotator": ["a", "a", "b"],
                                             "answer": [1.0, 0.0, 1.0]}))
    values, available = answers.matrix(["y", "x", "z"])
    assert available.tolist() == [[True, False], [False, True], [False, False]]
    assert values.tolist() == [[1.0, 0.0], [0.0, 0.5], [0.0, 0.0]]


def test_the_votes_table_has_every_usable_answer_with_its_funnel_verdict():
    decisions = pd.DataFrame({
        "usable": [True, True, True, False], "rejected_by": [None, "time_on_task", None, None],
        "worker_id": ["A", "B", "A", "C"], "assignment_id": ["1", "2", "3", "4"],
        "choice": ["A", "B", "B", "A"], "candidate_a_id": ["x", "x", "y", "y"], "candidate_b_id": ["y", "y", "x", "x"],
        "anchor_label": pd.array([1, 0, 1, None], dtype="Int8"),
    })
    votes = annotator_votes(decisions)
    assert len(votes) == 3  # rows in = kept + unkept usable answers (+ the unusable one, quarantined upstream)
    assert votes["kept"].tolist() == [True, False, True]
    assert votes[["image_id", "worker_id", "vote"]].values.tolist() == [["x", "A", 1], ["y", "B", 0], ["x", "A", 1]]
    assert votes.loc[votes["worker_id"] == "B", "reliability_kept"].isna().all()  # no kept answer


def test_the_summary_averages_over_folds_beside_the_estimate_without_the_image():
    part = pd.DataFrame({"annotator_model": "confusion", "annotator": ["W1", "W2"], "n_answers": [3, 4],
                         "weight": 1.0, "dawid_skene_reliability": [0.9, 0.6], "confusion_01": [0.1, 0.4],
                         "confusion_10": [0.1, 0.5]})
    parts = [part.assign(reliability=[0.9, 0.5]), part.assign(reliability=[0.8, 0.6])]
    index = [{"model": "m", "backbone": "b", "fold": k} for k in (0, 1)]
    summary = summarise_annotators(parts, index).set_index("annotator")
    assert summary.loc["W1", "reliability"] == pytest.approx(0.85)
    assert summary.loc["W2", "n_answers"] == 8 and summary.loc["W2", "n_folds"] == 2
    assert summary.loc["W2", "dawid_skene_reliability"] == 0.6 and np.isnan(summary.loc["W2", "bias"])
    with pytest.raises(ValueError, match="2 annotator tables for 1 jobs"):
        summarise_annotators(parts, index[:1])


def test_truth_checks_rank_learned_workers_and_students(data):
    _, _, _, votes, annotations = data
    images = pd.DataFrame({"image_id": data[0]["image_id"], "abnormal": data[0]["abnormal"], "asymmetry": 0,
                           "border": 0, "color": 0, "colors": ""})
    workers = pd.DataFrame({"worker_id": ["W1", "W2", "W3", "W4"], "is_spammer": [False, True, True, False]})
    learned = pd.concat([pd.DataFrame({"annotator_model": "confusion", "annotator": list(WORKERS),
                                       "reliability": [0.95, 0.3, 0.5], "answers": "all", "model": "m",
                                       "backbone": "b", "fold": fold, "source": "None", "feature": "None"})
                         for fold in (0, 1)], ignore_index=True)
    per_worker = truth.learned_workers(learned, votes, images, workers)
    row = per_worker.set_index("worker_id")
    assert row.loc["W1", "empirical_accuracy"] == 1.0 and row.loc["W2", "empirical_accuracy"] == 0.0
    assert row.loc["W1", "learned_reliability"] == 0.95 and row.loc["W1", "n_folds"] == 2
    assert np.isnan(row.loc["W4", "learned_reliability"]) and row.loc["W4", "n_votes"] == 0

    students = pd.DataFrame({"annotator_group": "student/2020/group01", "annotator": ["s1", "s2", "s3"],
                             "bias": [0.0, 1.0, 0.5]})
    affine = pd.DataFrame({"annotator_model": "affine", "annotator": [f"student/2020/group01/s{k}" for k in (1, 2, 3)],
                           "bias": [-0.5, 0.5, 0.1], "model": "a", "backbone": "b", "fold": 0, "source": "student",
                           "feature": "border"})
    table = truth.annotators_vs_truth(per_worker, pd.concat([learned, affine], ignore_index=True), annotations,
                                      students)
    value = table.set_index(["model", "estimator", "statistic"])["value"]
    assert value[("m", truth.CROWD_LAYER, truth.RELIABILITY_AUC)] == 1.0  # W1 over both spammers
    assert value[("m", truth.CROWD_LAYER, truth.RELIABILITY_SPEARMAN)] == pytest.approx(1.0)  # W1 > W3 > W2
    difference = value[("m", truth.LAYER_MINUS_DAWID_SKENE, truth.RELIABILITY_AUC)]
    assert difference == pytest.approx(1.0 - value[("m", truth.DAWID_SKENE, truth.RELIABILITY_AUC)])
    assert value[("a", truth.ANNOTATOR_HEAD, truth.BIAS_SPEARMAN)] == pytest.approx(1.0)
    # without the image: s2 scores one above s1 but s3 is noise, so its mean deviation ranks it anywhere
    assert ("a", truth.MEAN_DEVIATION, truth.BIAS_SPEARMAN) in value.index
    assert set(table.columns) == set(truth.ANNOTATORS_COLUMNS)


def test_notes_count_the_crowd_layers_answers(data):
    _, notes, answers = _job(data, "crowdsim-annotators")
    assert isinstance(notes, ExampleNotes)
    assert notes.counts["annotator_answers"] == len(answers.answers) and notes.counts["annotators"] == 3

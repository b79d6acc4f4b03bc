"""crowdskin's Dawid-Skene labels agree with crowd-kit's DawidSkene called directly, class for class,
and its worker reliabilities are the fitted confusion matrices' prior-weighted diagonals."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest
from crowdkit.aggregation import GLAD, DawidSkene

from crowdskin.crowd.labels import crowd_labels, reliability_labels, worker_reliability

# Votes of five workers on eight candidates. t1-t3: everyone says 1; t4-t6: everyone says 0 (the
# unambiguous ones); t7, t8 are split, and w5 (who answers at random) decides nothing. More 0 than 1
# overall, so the class priors differ and a swapped class would change both labels and posteriors.
VOTES = {
    "t1": {"w1": 1, "w2": 1, "w3": 1, "w4": 1},
    "t2": {"w1": 1, "w2": 1, "w3": 1, "w5": 0},
    "t3": {"w2": 1, "w3": 1, "w4": 1},
    "t4": {"w1": 0, "w2": 0, "w3": 0, "w4": 0, "w5": 1},
    "t5": {"w1": 0, "w3": 0, "w4": 0},
    "t6": {"w1": 0, "w2": 0, "w4": 0, "w5": 0},
    "t7": {"w1": 1, "w2": 1, "w3": 0, "w5": 0},
    "t8": {"w1": 0, "w2": 0, "w4": 1, "w5": 1},
}
UNAMBIGUOUS = {"t1": 1, "t2": 1, "t3": 1, "t4": 0, "t5": 0, "t6": 0}


def _votes() -> pd.DataFrame:
    rows = [(worker, task, label) for task, by in VOTES.items() for worker, label in by.items()]
    return pd.DataFrame(rows, columns=["worker", "task", "label"])


def _direct(votes: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """crowd-kit itself: (label per task, posterior probability of class 1 per task)."""
    model = DawidSkene(n_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(votes[["worker", "task", "label"]])
    return model.labels_.astype(int), model.probas_[1].astype(float)


def _kept(votes: pd.DataFrame) -> pd.DataFrame:
    """Kept MTurk answers that yield exactly `votes`: the voted task is the chosen candidate and the
    vote is the anchor's label; the chosen candidate sits alternately in slot A and slot B."""
    rows = []
    for i, vote in enumerate(votes.itertuples()):
        in_a = i % 2 == 0
        rows.append({
            "worker_id": vote.worker, "assignment_id": f"A{i:03d}", "anchor_label": vote.label,
            "choice": "A" if in_a else "B",
            "candidate_a_id": vote.task if in_a else "other", "candidate_b_id": "other" if in_a else vote.task,
        })
    frame = pd.DataFrame(rows)
    frame["anchor_label"] = frame["anchor_label"].astype("Int8")
    return frame


def test_reliability_labels_match_crowdkit_dawid_skene():
    """Catches: p_abnormal read from crowd-kit's class-0 column (probas_[0]), or a flipped label."""
    votes = _votes()
    expected_label, expected_p = _direct(votes)
    ours = reliability_labels(votes, "dawid_skene")
    assert set(ours.index) == set(VOTES)
    pd.testing.assert_series_equal(ours["label_reliability"].astype(int), expected_label.reindex(ours.index),
                                   check_names=False)
    pd.testing.assert_series_equal(ours["p_abnormal"], expected_p.reindex(ours.index), check_names=False)
    for task, label in UNAMBIGUOUS.items():
        assert ours.loc[task, "label_reliability"] == label
        assert (ours.loc[task, "p_abnormal"] > 0.9) if label else (ours.loc[task, "p_abnormal"] < 0.1)
    # the label is the more probable class
    assert ((ours["p_abnormal"] > 0.5).astype(int) == ours["label_reliability"].astype(int)).all()


def test_crowd_labels_from_answers_match_crowdkit():
    """Catches: a vote credited to the unchosen candidate (choice A and B swapped in votes_from_answers)."""
    votes = _votes()
    expected_label, expected_p = _direct(votes)
    table = crowd_labels(_kept(votes)).set_index("image_id")
    assert sorted(table.index) == sorted(VOTES)  # the never-chosen candidate "other" gets no vote
    assert (table["label_reliability"].astype(int) == expected_label.reindex(table.index)).all()
    assert table["p_abnormal"].to_numpy() == pytest.approx(expected_p.reindex(table.index).to_numpy())
    assert (table["n_votes"] == pd.Series({t: len(by) for t, by in VOTES.items()}).reindex(table.index)).all()
    for task, label in UNAMBIGUOUS.items():
        assert table.loc[task, "label_reliability"] == label


def test_worker_reliability_is_the_prior_weighted_diagonal_of_crowdkit_errors():
    """Each worker's P(vote = truth) = sum_k prior(k) * P(vote k | true k), read here cell by cell from
    crowd-kit's fit (a class the worker never answered counts 0). w5, who answers at random, is the
    least reliable. Without t1 and t2 the classes' priors differ (1/3 and 2/3: on all of VOTES they are
    equal, and an unweighted mean would pass). Catches: the off-diagonal cell (P(vote 1 | true 0))
    taken for the diagonal, or the priors left out (an unweighted mean of the diagonal)."""
    votes = _votes()
    votes = votes[~votes["task"].isin(["t1", "t2"])].reset_index(drop=True)
    model = DawidSkene(n_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(votes[["worker", "task", "label"]])
    assert model.priors_.to_dict() == pytest.approx({0: 2 / 3, 1: 1 / 3}, abs=1e-3)
    expected = {}
    for worker in sorted(votes["worker"].unique()):
        expected[worker] = sum(float(model.priors_[k]) * float(model.errors_.loc[(worker, k), k])
                               if (worker, k) in model.errors_.index else 0.0 for k in model.priors_.index)
    table = worker_reliability(_kept(votes)).set_index("worker_id")
    assert table["reliability"].to_dict() == pytest.approx(expected)
    assert table["reliability"].idxmin() == "w5"
    assert table["n_votes"].to_dict() == votes.groupby("worker").size().to_dict()
    assert (table["reliability_method"] == "dawid_skene").all()


def test_worker_reliability_glad_is_sigmoid_alpha_beta_averaged_over_the_worker_tasks():
    """GLAD: mean over a worker's tasks of sigmoid(alpha * exp(beta)), from crowd-kit's own fit.
    Catches: beta used without exp (crowd-kit stores it on the log scale)."""
    votes = _votes()
    model = GLAD(n_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(votes[["worker", "task", "label"]])
    by_vote = [1 / (1 + math.exp(-model.alphas_[v.worker] * math.exp(model.betas_[v.task])))
               for v in votes.itertuples()]
    expected = pd.Series(by_vote, index=votes.index).groupby(votes["worker"]).mean()
    table = worker_reliability(_kept(votes), "glad").set_index("worker_id")
    assert table["reliability"].to_dict() == pytest.approx(expected.to_dict())
    assert table["reliability"].between(0, 1).all()


def test_worker_reliability_of_one_class_votes_is_unknown_not_perfect():
    """Every vote 1: nothing tells a right vote from a wrong one, so no worker gets a reliability (NaN)
    rather than a perfect 1. Catches: the one-class early exit removed (crowd-kit then rates all 1.0)."""
    votes = _votes().assign(label=1)
    table = worker_reliability(_kept(votes))
    assert len(table) == votes["worker"].nunique() and table["reliability"].isna().all()
    assert list(worker_reliability(_kept(votes).iloc[:0]).columns) == ["worker_id", "n_votes", "reliability",
                                                                      "reliability_method"]

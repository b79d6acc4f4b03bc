"""crowdskin's Dawid-Skene labels agree with crowd-kit's DawidSkene called directly, class for class."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene

from crowdskin.crowd.labels import crowd_labels, reliability_labels

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

"""Folds under grouping: patient groups of unequal size with mixed labels, under both schemes."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from crowdskin.train.splits import SCHEMES, make_folds

N_FOLDS = 5
# Largest allowed gap between a split's abnormal share and the overall share, for splits of at
# least MIN_SPLIT lesions. The grouped splitter stays within ~0.035 on these tables; splitting
# without stratifying on `abnormal` drifts to 0.10-0.18.
SHARE_TOLERANCE = 0.10
MIN_SPLIT = 20


def _grouped_lesions(seed: int) -> pd.DataFrame:
    """72 patients holding 1..6 lesions each (252 in all); each patient has its own abnormal rate
    (0.1, 0.3 or 0.6), so most groups mix labels; image ids are shuffled against the groups."""
    rng = np.random.default_rng(seed)
    group_ids, abnormal = [], []
    for g, size in enumerate(np.tile(np.arange(1, 7), 12)):
        rate = rng.choice([0.1, 0.3, 0.6])
        group_ids += [f"P{g:03d}"] * size
        abnormal += [int(rng.random() < rate) for _ in range(size)]
    order = rng.permutation(len(group_ids))
    return pd.DataFrame({"image_id": [f"I{i:04d}" for i in order], "abnormal": abnormal, "group_id": group_ids})


@functools.cache
def _folds(scheme: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    lesions = _grouped_lesions(seed)
    assert set(lesions["group_id"].value_counts()) == set(range(1, 7))
    assert lesions.groupby("group_id")["abnormal"].nunique().eq(2).sum() >= 20  # labels mixed inside groups
    table = make_folds(lesions, scheme=scheme, n_folds=N_FOLDS, seed=seed).merge(
        lesions, on="image_id", how="left", validate="many_to_one")
    return lesions, table


CASES = [(scheme, seed) for scheme in SCHEMES for seed in (0, 1)]


@pytest.fixture(params=CASES, ids=lambda p: f"{p[0]}-seed{p[1]}")
def folds(request) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _folds(*request.param)


def test_no_group_spans_two_splits_in_any_fold(folds):
    """Catches: the splitter ignoring `group_id` (plain StratifiedKFold for grouped data)."""
    _, table = folds
    splits_per_group = table.groupby(["fold", "group_id"])["split"].nunique()
    spanning = splits_per_group[splits_per_group > 1]
    assert spanning.empty, f"groups spread over several splits: {spanning.head().to_dict()}"


def test_every_lesion_once_per_fold(folds):
    """Catches: a fold holding a lesion twice (fold 0's rows appended again) or no val split (val written as train)."""
    lesions, table = folds
    assert sorted(table["fold"].unique()) == list(range(N_FOLDS))
    for _, fold in table.groupby("fold"):
        assert fold["image_id"].is_unique
        assert set(fold["image_id"]) == set(lesions["image_id"])
        assert set(fold["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("seed", [0, 1])
def test_kfold_tests_each_lesion_exactly_once(seed):
    """Catches: kfold drawing every fold's test part from one outer split (all folds test the same part)."""
    lesions, table = _folds("kfold", seed)
    tested = table.loc[table["split"] == "test", "image_id"]
    assert tested.value_counts().eq(1).all()
    assert set(tested) == set(lesions["image_id"])


def test_abnormal_share_per_split_is_stratified(folds):
    """Catches: stratifying on something other than `abnormal` (labels not passed to the splitter)."""
    lesions, table = folds
    overall = lesions["abnormal"].mean()
    shares = table.groupby(["fold", "split"])["abnormal"].agg(["mean", "size"])
    assert shares["size"].min() >= MIN_SPLIT
    gap = (shares["mean"] - overall).abs()
    assert gap.max() <= SHARE_TOLERANCE, f"overall share {overall:.3f}; splits:\n{shares[gap > SHARE_TOLERANCE]}"

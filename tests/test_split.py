"""Folds: no leakage, exact proportions, groups kept together, stable across runs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from crowdskin.train.splits import SplitError, make_folds, trainable_lesions


def _lesions(n: int = 100, n_abnormal: int = 30, groups: bool = False) -> pd.DataFrame:
    ids = [f"L{i:04d}" for i in range(n)]
    abnormal = np.r_[np.ones(n_abnormal, int), np.zeros(n - n_abnormal, int)]
    group = [f"P{i // 4}" for i in range(n)] if groups else [pd.NA] * n
    return pd.DataFrame({"image_id": ids, "abnormal": abnormal, "group_id": group})


def test_trainable_lesions_reports_every_skipped_lesion():
    images = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "dataset": ["x"] * 4,
            "image_path": ["a.jpg", None, "c.jpg", None],
            "abnormal": pd.array([1, 0, None, None], dtype="Int8"),
        }
    )
    trainable, skipped = trainable_lesions(images)
    assert trainable["image_id"].tolist() == ["a"]
    assert dict(zip(skipped["image_id"], skipped["reason"], strict=True)) == {
        "b": "no image",
        "c": "abnormal label unknown",
        "d": "no image and abnormal label unknown",
    }
    assert len(trainable) + len(skipped) == len(images)


def test_kfold_each_lesion_tested_once_with_exact_proportions():
    lesions = _lesions(100, 30)
    folds = make_folds(lesions, scheme="kfold", n_folds=5, seed=1)
    tests = folds[folds["split"] == "test"]
    assert tests["image_id"].value_counts().eq(1).all()
    assert set(tests["image_id"]) == set(lesions["image_id"])
    for _, fold in folds.groupby("fold"):
        counts = fold["split"].value_counts()
        assert (counts["train"], counts["val"], counts["test"]) == (64, 16, 20)
        # stratified: 30 % abnormal in every part
        merged = fold.merge(lesions, on="image_id")
        assert merged.groupby("split")["abnormal"].sum()["test"] == 6
        assert merged.groupby("split")["abnormal"].mean().sub(0.3).abs().max() <= 0.05
        assert len(fold) == len(lesions)


def test_repeated_holdout_proportions_and_overlapping_tests():
    lesions = _lesions(160, 48)
    folds = make_folds(lesions, scheme="repeated_holdout", n_folds=5, seed=3)
    for _, fold in folds.groupby("fold"):
        counts = fold["split"].value_counts()
        assert (counts["train"], counts["val"], counts["test"]) == (112, 28, 20)  # 70/17.5/12.5 %
    tests = folds[folds["split"] == "test"]
    # Five independent draws: each fold tests a different set, and (unlike kfold, whose test
    # folds are disjoint) some lesion is tested in more than one fold.
    assert tests.groupby("fold")["image_id"].agg(frozenset).nunique() == 5
    assert tests["image_id"].value_counts().max() > 1


def test_groups_never_span_train_and_test():
    lesions = _lesions(120, 36, groups=True)
    folds = make_folds(lesions, scheme="kfold", n_folds=5, seed=7).merge(lesions, on="image_id")
    for _, fold in folds.groupby("fold"):
        splits_per_group = fold.groupby("group_id")["split"].nunique()
        assert splits_per_group.eq(1).all()


def test_folds_are_stable_and_seed_dependent():
    lesions = _lesions(80, 20)
    first = make_folds(lesions, scheme="kfold", n_folds=5, seed=5)
    again = make_folds(lesions.sample(frac=1, random_state=0).reset_index(drop=True), scheme="kfold", n_folds=5, seed=5)
    pd.testing.assert_frame_equal(first, again)
    other = make_folds(lesions, scheme="kfold", n_folds=5, seed=6)
    assert other["split_hash"].iloc[0] != first["split_hash"].iloc[0]
    assert first["split_hash"].nunique() == 1


def test_one_class_is_a_clear_error():
    with pytest.raises(SplitError, match="both classes"):
        make_folds(_lesions(20, 0), scheme="kfold", n_folds=5, seed=0)


@pytest.mark.parametrize(("scheme", "n_folds", "minimum", "needed"), [
    ("kfold", 5, 1, "7 positives"),   # 1: the least an AUC needs; 7: the inner split's 5 beside a test fold
    ("kfold", 2, 3, "10 positives"),
    ("repeated_holdout", 2, 1, "8 positives"),  # each draw tests 1/8 whatever n_folds
])
def test_too_few_positives_for_the_test_folds_names_the_counts_and_the_settings(scheme, n_folds, minimum, needed):
    with pytest.raises(SplitError) as caught:
        make_folds(_lesions(12, 4), scheme=scheme, n_folds=n_folds, seed=0, min_positives_per_fold=minimum)
    message = str(caught.value)
    assert "12 lesions (4 positive, 8 negative)" in message and needed in message
    assert f"lower split.min_positives_per_fold (now {minimum})" in message and "split.n_folds" in message


def test_too_few_lesions_for_the_inner_validation_split_says_so():
    """Each fold's test set has its 2 positives (the minimum is met), but the remaining 2 positives
    cannot give each of the inner split's 5 parts one: scikit-learn's "n_splits=5" error before."""
    with pytest.raises(SplitError) as caught:
        make_folds(_lesions(10, 4), scheme="kfold", n_folds=2, seed=0, min_positives_per_fold=2)
    message = str(caught.value)
    assert "inner validation split" in message and "5 parts" in message
    assert "10 lesions (4 positive, 6 negative)" in message and "2 folds" in message


def test_a_test_fold_that_groups_leave_short_of_positives_is_refused():
    """The counts allow 2 folds of 5 positives, but a patient's 14 positive lesions stay in one test
    fold, so the other gets at most the 4 others."""
    ids = [f"L{i:04d}" for i in range(58)]
    abnormal = [1] * 18 + [0] * 40
    group = ["P-big"] * 14 + [pd.NA] * 44
    lesions = pd.DataFrame({"image_id": ids, "abnormal": abnormal, "group_id": group})
    with pytest.raises(SplitError) as caught:
        make_folds(lesions, scheme="kfold", n_folds=2, seed=0, min_positives_per_fold=5)
    message = str(caught.value)
    assert re.search(r"fold \d's test set has [0-4] positive", message)
    assert "group_id" in message and "split.min_positives_per_fold (5)" in message


# --- folds as a reader finds them ------------------------------------------------------------------


def test_a_lesion_in_train_and_test_of_one_fold_is_refused_naming_file_lesion_and_fold():
    from crowdskin.train.splits import validate_folds

    folds = make_folds(_lesions(50, 15), scheme="kfold", n_folds=5, seed=1)
    validate_folds(folds, source="splits/folds.parquet", scheme="kfold")
    tested = folds.loc[(folds["fold"] == 2) & (folds["split"] == "test"), "image_id"].iloc[0]
    leaked = pd.concat([folds, pd.DataFrame({"image_id": [tested], "fold": [2], "split": ["train"],
                                             "split_hash": [folds["split_hash"].iloc[0]]})])
    with pytest.raises(SplitError, match=rf"splits/folds.parquet: lesion '{tested}' is in fold 2 more than once "
                                         r"\(splits \['test', 'train'\]\)"):
        validate_folds(leaked, source="splits/folds.parquet")


def test_kfold_folds_test_each_lesion_exactly_once_or_are_refused():
    from crowdskin.train.splits import validate_folds

    folds = make_folds(_lesions(50, 15), scheme="kfold", n_folds=5, seed=1)
    lesion = folds.loc[(folds["fold"] == 0) & (folds["split"] == "test"), "image_id"].iloc[0]
    twice = folds.copy()
    twice.loc[(twice["fold"] == 3) & (twice["image_id"] == lesion), "split"] = "test"
    with pytest.raises(SplitError, match=rf"f.parquet: lesion '{lesion}' is in the test split of folds \[0, 3\]"):
        validate_folds(twice, source="f.parquet", scheme="kfold")
    validate_folds(twice, source="f.parquet", scheme="repeated_holdout")  # test sets may overlap there
    never = folds.copy()
    never.loc[(never["fold"] == 0) & (never["image_id"] == lesion), "split"] = "train"
    with pytest.raises(SplitError, match=rf"f.parquet: lesion '{lesion}' \(in fold 0\) is in no fold's test split"):
        validate_folds(never, source="f.parquet", scheme="kfold")
    odd = folds.copy()
    odd.loc[0, "split"] = "holdout"
    with pytest.raises(SplitError, match=r"f.parquet: lesion .* has split 'holdout'"):
        validate_folds(odd, source="f.parquet")


def test_split_hash_is_recomputable_from_the_assignment_alone():
    from crowdskin.train.splits import split_hash

    folds = make_folds(_lesions(50, 15), scheme="kfold", n_folds=5, seed=1)
    assert split_hash(folds) == folds["split_hash"].iloc[0]
    edited = folds.copy()
    edited.loc[0, "split"] = "val" if edited.loc[0, "split"] == "train" else "train"
    assert split_hash(edited) != folds["split_hash"].iloc[0]

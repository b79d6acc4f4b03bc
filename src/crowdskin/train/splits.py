"""Trainable lesions and the cross-validation folds.

Two schemes, both stratified on `abnormal`, grouped on `group_id` (ISIC 2020 patient) so that no
group spans train and test, and deterministic from the seed:

- `kfold` (default): stratified 5-fold cross-validation. Each lesion is in exactly one test fold
  (1/5 = 20 %); the other 80 % is divided 4 : 1 into train and validation, the study's 70 : 17.5
  ratio, so 64 % / 16 % / 20 % of all lesions.
- `repeated_holdout`: what the study's code did: five seeded draws of 70 % train, 17.5 % validation
  and 12.5 % test. Test sets of different draws overlap, and some lesions are never tested.
  Implemented as "one part of a stratified 8-fold split is test (1/8), then one part of a
  stratified 5-fold split of the rest is validation (7/8 x 1/5 = 17.5 %)".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pandas as pd

SCHEMES = ("kfold", "repeated_holdout")
FOLD_COLUMNS = ["image_id", "fold", "split", "split_hash"]


class SplitError(ValueError):
    """The lesions cannot be split as configured (too few, one class only, ...)."""


def trainable_lesions(images: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split `images` into lesions that can be trained on and a table of skipped ones.

    Trainable = has an `image_path` and a known `abnormal` label. Returns (trainable, skipped),
    skipped having columns image_id, dataset, reason, so nothing disappears silently.
    """
    missing = {"image_id", "dataset", "image_path", "abnormal"} - set(images.columns)
    if missing:
        raise SplitError(f"images table lacks column(s) {sorted(missing)}")
    no_image = images["image_path"].isna() | (images["image_path"].astype("string") == "")
    no_label = images["abnormal"].isna()
    reason = pd.Series(pd.NA, index=images.index, dtype="string")
    reason[no_label] = "abnormal label unknown"
    reason[no_image] = "no image"
    reason[no_image & no_label] = "no image and abnormal label unknown"
    skipped = images.loc[reason.notna(), ["image_id", "dataset"]].assign(reason=reason[reason.notna()])
    trainable = images.loc[reason.isna()].copy()
    trainable["abnormal"] = trainable["abnormal"].astype(int)
    if "group_id" not in trainable.columns:
        trainable["group_id"] = pd.NA
    return trainable.reset_index(drop=True), skipped.reset_index(drop=True)


def _groups(lesions: pd.DataFrame) -> np.ndarray:
    # A lesion without a patient/lesion id is its own group.
    group = lesions["group_id"].astype("string")
    return np.where(group.isna(), "lesion:" + lesions["image_id"].astype(str), "group:" + group.fillna(""))


def _one_part(
    labels: np.ndarray, groups: np.ndarray, n_parts: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified (and, where groups repeat, grouped) partition into `n_parts` parts."""
    # Imported here: training jobs use trainable_lesions and should not pay for sklearn's import.
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if len(labels) < n_parts:
        raise SplitError(f"cannot split {len(labels)} lesions into {n_parts} parts")
    # StratifiedKFold gives exact part sizes; its grouped sibling is greedy and only approximate,
    # so it is used only where a group really holds several lesions.
    if len(np.unique(groups)) == len(groups):
        splitter = StratifiedKFold(n_splits=n_parts, shuffle=True, random_state=seed)
        return splitter.split(np.zeros(len(labels)), labels)
    splitter_g = StratifiedGroupKFold(n_splits=n_parts, shuffle=True, random_state=seed)
    return splitter_g.split(np.zeros(len(labels)), labels, groups)


def make_folds(
    lesions: pd.DataFrame, *, scheme: str, n_folds: int, seed: int
) -> pd.DataFrame:
    """Long table image_id, fold, split (`train`/`val`/`test`), split_hash: one row per lesion and fold.

    `lesions` is the trainable table of `trainable_lesions` (image_id, abnormal, group_id).
    """
    if scheme not in SCHEMES:
        raise SplitError(f"unknown split scheme {scheme!r}; expected one of {SCHEMES}")
    # Sorted so that the assignment depends on the lesions, not on the row order of the table.
    lesions = lesions.sort_values("image_id", kind="stable").reset_index(drop=True)
    if lesions["image_id"].duplicated().any():
        dup = lesions.loc[lesions["image_id"].duplicated(), "image_id"].iloc[0]
        raise SplitError(f"image_id {dup!r} appears more than once in the lesions table")
    labels = lesions["abnormal"].to_numpy(dtype=int)
    counts = np.bincount(labels, minlength=2)
    if (counts == 0).any():
        raise SplitError(f"need both classes to stratify; abnormal counts are {counts.tolist()}")
    ids = lesions["image_id"].to_numpy()
    groups = _groups(lesions)
    rows = []
    if scheme == "kfold":
        outer = list(_one_part(labels, groups, n_folds, seed))
        draws = [(k, rest, test) for k, (rest, test) in enumerate(outer)]
    else:
        draws = []
        for k in range(n_folds):
            rest, test = next(iter(_one_part(labels, groups, 8, seed + k)))
            draws.append((k, rest, test))
    for k, rest, test in draws:
        inner_train, inner_val = next(
            iter(_one_part(labels[rest], groups[rest], 5, seed + 1000 + k))
        )
        split = np.empty(len(ids), dtype=object)
        split[test] = "test"
        split[rest[inner_train]] = "train"
        split[rest[inner_val]] = "val"
        rows.append(pd.DataFrame({"image_id": ids, "fold": k, "split": split}))
    folds = pd.concat(rows, ignore_index=True)
    folds["fold"] = folds["fold"].astype("int64")
    folds["split_hash"] = split_hash(folds, scheme=scheme, seed=seed)
    return folds[FOLD_COLUMNS]


def split_hash(folds: pd.DataFrame, *, scheme: str, seed: int) -> str:
    """A short content hash of the assignment, recorded with every run to tie results to a split."""
    ordered = folds.sort_values(["fold", "image_id"])
    text = "\n".join(
        f"{i}\t{f}\t{s}" for i, f, s in zip(ordered["image_id"], ordered["fold"], ordered["split"], strict=True)
    )
    return hashlib.sha256(f"{scheme}\t{seed}\n{text}".encode()).hexdigest()[:16]

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
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMES = ("kfold", "repeated_holdout")
FOLD_COLUMNS = ["image_id", "fold", "split", "split_hash"]
SPLITS = ("train", "val", "test")


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
    folds["split_hash"] = split_hash(folds)
    return folds[FOLD_COLUMNS]


def split_hash(folds: pd.DataFrame) -> str:
    """A short content hash of the assignment, recorded with every run to tie results to a split.

    It hashes the assignment alone (not the scheme or seed that made it), so any reader can
    recompute it from the folds it really read: a file edited by hand gets a hash of its own.
    """
    ordered = folds.sort_values(["fold", "image_id"])
    text = "\n".join(
        f"{i}\t{f}\t{s}" for i, f, s in zip(ordered["image_id"], ordered["fold"], ordered["split"], strict=True)
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _few(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return f"{shown} (+{len(ids) - limit} more)" if len(ids) > limit else shown


def read_folds(path: str | Path, *, scheme: str | None = None) -> tuple[pd.DataFrame, str, str | None]:
    """The folds file at `path`, validated (`validate_folds`), the split hash of the assignment it
    holds, and a warning where the hash the file records is not that one (the file was edited or
    replaced after it was made): what a run records is always the hash of the folds it read."""
    folds = pd.read_parquet(path)
    validate_folds(folds, source=str(path), scheme=scheme)
    recomputed = split_hash(folds)
    recorded = sorted(set(folds["split_hash"].astype(str))) if "split_hash" in folds.columns else []
    warning = None
    if recorded and recorded != [recomputed]:
        warning = (f"folds file {path} records split_hash {', '.join(recorded)} but its assignment hashes to "
                   f"{recomputed} (edited after it was made?): {recomputed} is recorded")
    return folds.assign(split_hash=recomputed), recomputed, warning


def validate_folds(folds: pd.DataFrame, *, source: str, scheme: str | None = None) -> None:
    """Raise SplitError, naming `source` (the folds file), the lesion and the fold, unless `folds` is a
    usable assignment: the columns of FOLD_COLUMNS but the hash, splits train/val/test only, each
    lesion once per fold (so train, validation and test are disjoint), and, for `kfold`, each lesion
    in exactly one fold's test split. `scheme` None checks what every scheme shares."""
    missing = [c for c in ("image_id", "fold", "split") if c not in folds.columns]
    if missing:
        raise SplitError(f"folds file {source} lacks column(s) {missing}")
    if folds["image_id"].isna().any() or folds["fold"].isna().any():
        raise SplitError(f"folds file {source} has rows without an image_id or a fold")
    unknown = folds.loc[~folds["split"].isin(SPLITS)]
    if len(unknown):
        row = unknown.iloc[0]
        raise SplitError(f"folds file {source}: lesion {row['image_id']!r} in fold {row['fold']} has split "
                         f"{row['split']!r}; expected one of {list(SPLITS)} ({len(unknown)} such row(s))")
    repeated = folds[folds.duplicated(["fold", "image_id"], keep=False)]
    if len(repeated):
        (fold, lesion), rows = next(iter(repeated.groupby(["fold", "image_id"], sort=True)))
        n_lesions = repeated[["fold", "image_id"]].drop_duplicates().shape[0]
        raise SplitError(f"folds file {source}: lesion {lesion!r} is in fold {fold} more than once "
                         f"(splits {sorted(rows['split'])}): train, val and test must be disjoint "
                         f"({n_lesions} such lesion-fold pair(s))")
    if scheme != "kfold":
        return
    tests = folds.loc[folds["split"] == "test"]
    times_tested = tests.groupby("image_id")["fold"].agg(list)
    twice = times_tested[times_tested.map(len) > 1]
    if len(twice):
        lesion = sorted(twice.index)[0]
        raise SplitError(f"folds file {source}: lesion {lesion!r} is in the test split of folds "
                         f"{sorted(twice[lesion])}; with split.scheme kfold each lesion is tested in exactly "
                         f"one fold ({len(twice)} such lesion(s): {_few(sorted(twice.index))})")
    never = sorted(set(folds["image_id"]) - set(tests["image_id"]))
    if never:
        fold = folds.loc[folds["image_id"] == never[0], "fold"].min()
        raise SplitError(f"folds file {source}: lesion {never[0]!r} (in fold {fold}) is in no fold's test split; "
                         f"with split.scheme kfold each lesion is tested in exactly one fold "
                         f"({len(never)} such lesion(s): {_few(never)})")

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
# repeated_holdout tests one part of HOLDOUT_PARTS in each draw; every fold's other lesions are
# divided into INNER_PARTS, one of them validation.
HOLDOUT_PARTS = 8
INNER_PARTS = 5
# Where a refusal points the user; the config keys that set what make_folds is given.
MINIMUM_SETTING = "split.min_positives_per_fold"
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


def _counted(n_lesions: int, n_positives: int) -> str:
    return f"{n_lesions} lesions ({n_positives} positive, {n_lesions - n_positives} negative)"


def _least_count(test_parts: int, per_test_part: int) -> int:
    """The fewest lesions of a class that give each of `test_parts` test parts `per_test_part` and
    leave the inner validation split one in each of its parts, beside the largest test part."""
    count = per_test_part * test_parts
    while count - -(-count // test_parts) < INNER_PARTS:
        count += 1
    return count


def _fold_count_problem(
    n_lesions: int, n_positives: int, *, scheme: str, n_folds: int, min_positives_per_fold: int
) -> tuple[str, bool] | None:
    """What is wrong, and whether the minimum of positives per test fold is what it falls short of."""
    n_negatives = n_lesions - n_positives
    test_parts = n_folds if scheme == "kfold" else HOLDOUT_PARTS
    if n_positives < min_positives_per_fold * test_parts or n_negatives < test_parts:
        if scheme == "kfold":
            return (f"cannot make {n_folds} folds (split.n_folds) with {min_positives_per_fold} or more "
                    f"positives ({MINIMUM_SETTING}) and a negative in each test fold"), True
        return (f"cannot make {n_folds} repeated_holdout draws (split.n_folds), each testing 1/{HOLDOUT_PARTS} "
                f"of the lesions, with {min_positives_per_fold} or more positives ({MINIMUM_SETTING}) and a "
                "negative in each test set"), True
    # The fold with the largest test part leaves the fewest for the inner split.
    rest_positives = n_positives - -(-n_positives // test_parts)
    rest_negatives = n_negatives - -(-n_negatives // test_parts)
    if min(rest_positives, rest_negatives) < INNER_PARTS:
        return (f"in {n_folds} folds leave as few as {rest_positives} positive and {rest_negatives} negative "
                f"lesions beside a fold's test set, which the inner validation split divides into "
                f"{INNER_PARTS} parts, one of them validation: it needs {INNER_PARTS} or more of each class"), False
    return None


def check_fold_counts(
    n_lesions: int, n_positives: int, *, scheme: str, n_folds: int, min_positives_per_fold: int
) -> None:
    """Raise SplitError, with the counts and what to change, where `n_lesions` lesions of which
    `n_positives` are positive cannot give every test fold `min_positives_per_fold` positives (and a
    negative), or the inner validation split a lesion of each class in each of its parts.

    Counts alone decide it for lesions without groups; make_folds checks the folds drawn as well.
    """
    found = _fold_count_problem(n_lesions, n_positives, scheme=scheme, n_folds=n_folds,
                                min_positives_per_fold=min_positives_per_fold)
    if found is None:
        return
    problem, short_of_minimum = found
    test_parts = n_folds if scheme == "kfold" else HOLDOUT_PARTS
    change = [f"add lesions (this needs {_least_count(test_parts, min_positives_per_fold)} positives and "
              f"{_least_count(test_parts, 1)} negatives)"]
    if short_of_minimum:
        change.append(f"lower {MINIMUM_SETTING} (now {min_positives_per_fold})")
    fewer = [k for k in range(2, n_folds if scheme == "kfold" else n_lesions) if _fold_count_problem(
        n_lesions, n_positives, scheme="kfold", n_folds=k, min_positives_per_fold=min_positives_per_fold) is None]
    if fewer:
        fix = f"split.n_folds: {max(fewer)} or fewer"
        change.insert(0, f"set {fix}" if scheme == "kfold" else f"set split.scheme: kfold with {fix}")
    raise SplitError(f"{_counted(n_lesions, n_positives)} {problem}: {'; or '.join(change)}")


def _check_test_positives(
    labels: np.ndarray, draws: list[tuple[int, np.ndarray, np.ndarray]], groups: np.ndarray, minimum: int
) -> None:
    """Grouped lesions (group_id) stay together, so folds drawn from counts that suffice can still
    fall short."""
    for k, _, test in draws:
        positives = int(labels[test].sum())
        if positives < minimum or positives == len(test):
            grouped = len(np.unique(groups)) < len(groups)
            why = (" (lesions of one group_id stay in one fold, so the folds are uneven)" if grouped else "")
            raise SplitError(
                f"fold {k}'s test set has {positives} positives among its {len(test)} lesions: fewer than "
                f"{MINIMUM_SETTING} ({minimum}), or no negative{why}; lower split.n_folds or "
                f"{MINIMUM_SETTING}, or add lesions"
            )


def make_folds(
    lesions: pd.DataFrame, *, scheme: str, n_folds: int, seed: int, min_positives_per_fold: int = 1
) -> pd.DataFrame:
    """Long table image_id, fold, split (`train`/`val`/`test`), split_hash: one row per lesion and fold.

    `lesions` is the trainable table of `trainable_lesions` (image_id, abnormal, group_id). Raises
    SplitError where a test fold would hold fewer than `min_positives_per_fold` positives (1: the
    least a test AUC needs) or the inner validation split too few of a class; see check_fold_counts.
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
    check_fold_counts(len(labels), int(counts[1]), scheme=scheme, n_folds=n_folds,
                      min_positives_per_fold=min_positives_per_fold)
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
    _check_test_positives(labels, draws, groups, min_positives_per_fold)
    for k, rest, test in draws:
        rest_counts = np.bincount(labels[rest], minlength=2)
        if rest_counts.min() < INNER_PARTS:
            raise SplitError(
                f"fold {k} leaves {rest_counts[1]} positive and {rest_counts[0]} negative lesions beside "
                f"its test set: the inner validation split divides those into {INNER_PARTS} parts and "
                "needs at least that many of each class; add lesions, or lower split.n_folds"
            )
        inner_train, inner_val = next(
            iter(_one_part(labels[rest], groups[rest], INNER_PARTS, seed + 1000 + k))
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

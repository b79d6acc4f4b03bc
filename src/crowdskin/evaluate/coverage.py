"""Predictions against the folds they claim to test: every test lesion of a fold predicted exactly
once, and no other lesion, before anything is scored or averaged.

A predictions file that lost or gained rows would otherwise give an AUC on another set of lesions
than the fold's (or an ensemble of models tested on different lesions) with nothing said.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


class PredictionsError(ValueError):
    """A predictions file whose test rows are not its fold's test lesions."""


def _few(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return f"{shown} (+{len(ids) - limit} more)" if len(ids) > limit else shown


def fold_test_lesions(folds: pd.DataFrame, fold: int) -> set[str]:
    """The image_ids of `fold`'s test split in a (validated) folds table."""
    return set(folds.loc[(folds["fold"] == fold) & (folds["split"] == "test"), "image_id"].astype(str))


def check_test_predictions(predictions: pd.DataFrame, expected: set[str], *, source: str, fold: int,
                           folds_source: str) -> None:
    """Raise PredictionsError naming `source`, the fold and the lesions, unless the test rows of
    `predictions` hold each lesion of `expected` (the fold's test split in `folds_source`) exactly once
    and no other."""
    tested = predictions.loc[predictions["split"] == "test", "image_id"].astype(str)
    counts = tested.value_counts()
    missing = sorted(expected - set(counts.index))
    extra = sorted(set(counts.index) - expected)
    twice = sorted(counts.index[counts > 1])
    problems = [f"{label} {len(ids)} lesion(s) {_few(ids)}" for label, ids in
                (("missing", missing), ("not in the fold's test split:", extra), ("predicted more than once:", twice))
                if ids]
    if problems:
        raise PredictionsError(f"{source}: the test predictions of fold {fold} are not the {len(expected)} test "
                               f"lesions of that fold in {folds_source}: " + "; ".join(problems))

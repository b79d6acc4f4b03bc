"""ENHANCE training targets: standardise each annotator, average per lesion, measure disagreement.

Standardisation follows the ENHANCE study's code (`sklearn.preprocessing.scale` on each annotator
column): zero mean and unit *population* variance (ddof=0) over the lesions that annotator scored,
within one annotator group of one dataset (a crowd file, a student group file, the automated
scores of one dataset). An annotator whose scores are all equal keeps the centred scores (all 0),
as `preprocessing.scale` does, rather than dividing by zero.

Lesions scored by several student groups (``multi_group``):

- ``"pool"`` (default): every annotator of every group counts once; the target is the mean of all
  their z-scores and the moments are taken over all of them. Each group is standardised on its
  own first, so a group that scores on a harsher scale does not shift the pooled mean.
- ``"first"``: the study's behaviour: only the first group in sorted annotator_group order
  (``student/2017-2018/group01`` < ``.../group02`` < ``student/2018-2019/...``) is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

ABC_FEATURES: tuple[str, ...] = ("asymmetry", "border", "color")
STANDARDISATION_UNIT = ["source", "dataset", "annotator_group", "feature", "annotator"]
TARGET_KEY = ["image_id", "dataset", "source", "feature"]
MultiGroup = Literal["pool", "first"]


def standardise_per_annotator(annotations: pd.DataFrame, *, ddof: int = 0) -> pd.DataFrame:
    """Return `annotations` with a column `z`: each annotator's scores as z-scores.

    The unit is (source, dataset, annotator_group, feature, annotator): one annotator column of one
    file. `ddof=0` reproduces `sklearn.preprocessing.scale`, which the study used.
    """
    required = {*STANDARDISATION_UNIT, "image_id", "value"}
    missing = required - set(annotations.columns)
    if missing:
        raise KeyError(f"annotations lack column(s) {sorted(missing)}")
    out = annotations.copy()
    values = out["value"].astype(float)
    grouped = values.groupby([out[c] for c in STANDARDISATION_UNIT], sort=False, dropna=False)
    mean = grouped.transform("mean")
    std = grouped.transform("std", ddof=ddof)
    # A constant column (std 0, or a single score) is centred only, as preprocessing.scale does.
    scale = std.where((std > 0) & std.notna(), 1.0)
    out["z"] = (values - mean) / scale
    return out


def _moments(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, population std, skewness and excess kurtosis of `z` per key.

    Computed from central moments in one vectorised groupby, because a per-group scipy call is
    ~100x slower on the full student table; matches scipy.stats.skew/kurtosis with bias=True.
    Skewness and kurtosis are NaN where the annotators agree exactly (zero spread) or only
    one annotator scored the lesion: there is no shape to measure.
    """
    grouped = frame.groupby(keys, sort=True, observed=True)["z"]
    stats = grouped.agg(target="mean", n_annotators="count").reset_index()
    centred = frame["z"] - grouped.transform("mean")
    powers = pd.DataFrame({"m2": centred**2, "m3": centred**3, "m4": centred**4})
    central = powers.groupby([frame[k] for k in keys], sort=True, observed=True).mean().reset_index(drop=True)
    m2 = central["m2"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        flat = m2 <= 1e-24
        stats["std"] = np.sqrt(m2)
        stats["skewness"] = np.where(flat, np.nan, central["m3"].to_numpy() / m2**1.5)
        stats["kurtosis"] = np.where(flat, np.nan, central["m4"].to_numpy() / m2**2 - 3.0)
    stats["n_groups"] = frame.groupby(keys, sort=True, observed=True)["annotator_group"].nunique().to_numpy()
    return stats


def consensus_targets(
    annotations: pd.DataFrame,
    images: pd.DataFrame | None = None,
    *,
    features: Iterable[str] | None = ABC_FEATURES,
    multi_group: MultiGroup = "pool",
    ddof: int = 0,
) -> pd.DataFrame:
    """One row per (lesion, source, feature): the ENHANCE consensus target and its disagreement.

    Columns: image_id, dataset, source, feature, target, available, n_annotators, n_groups, std,
    skewness, kurtosis. With `images`, every lesion of a dataset that a (source, feature) covers
    gets a row; lesions that source did not score have available=False, n_annotators=0 and NaN
    statistics, so a training stage can weight them out as the study did.
    `features=None` keeps every feature in the annotations.
    """
    if multi_group not in ("pool", "first"):
        raise ValueError(f"multi_group must be 'pool' or 'first', not {multi_group!r}")
    frame = annotations
    if features is not None:
        frame = frame[frame["feature"].isin(list(features))]
    frame = standardise_per_annotator(frame, ddof=ddof)
    if multi_group == "first" and len(frame):
        first_group = frame.groupby(TARGET_KEY, observed=True)["annotator_group"].transform("min")
        frame = frame[frame["annotator_group"] == first_group]
    columns = [*TARGET_KEY, "target", "available", "n_annotators", "n_groups", "std", "skewness", "kurtosis"]
    if frame.empty:
        numeric = ("target", "std", "skewness", "kurtosis")
        return pd.DataFrame({c: pd.Series(dtype=float if c in numeric else object) for c in columns})
    stats = _moments(frame, TARGET_KEY)
    stats["available"] = True
    if images is not None:
        stats = _with_unannotated_lesions(stats, images)
    stats["n_annotators"] = stats["n_annotators"].astype("int64")
    stats["n_groups"] = stats["n_groups"].astype("int64")
    return stats[columns].sort_values(["source", "feature", "dataset", "image_id"], ignore_index=True)


def _with_unannotated_lesions(stats: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    covered = stats[["dataset", "source", "feature"]].drop_duplicates()
    lesions = images[["image_id", "dataset"]].drop_duplicates()
    grid = covered.merge(lesions, on="dataset", how="inner")
    full = grid.merge(stats, on=TARGET_KEY, how="left")
    full["available"] = full["available"].fillna(False).astype(bool)
    full["n_annotators"] = full["n_annotators"].fillna(0)
    full["n_groups"] = full["n_groups"].fillna(0)
    # Annotated lesions missing from the image table are the ingest's job to quarantine; keep
    # them rather than drop them silently.
    orphans = stats.merge(lesions, on=["image_id", "dataset"], how="left", indicator=True)
    orphans = orphans[orphans["_merge"] == "left_only"].drop(columns="_merge")
    return pd.concat([full, orphans], ignore_index=True)


def select_annotations(
    annotations: pd.DataFrame,
    *,
    annotator_group: str | None = None,
    source: str | None = None,
    dataset: str | None = None,
    features: Sequence[str],
) -> pd.DataFrame:
    """The rows of one annotator group, source and dataset (None = any) for the given features."""
    keep = annotations["feature"].isin(list(features))
    for column, wanted in (("annotator_group", annotator_group), ("source", source), ("dataset", dataset)):
        if wanted is not None:
            keep &= annotations[column] == wanted
    return annotations[keep]


def wide_annotations(
    annotations: pd.DataFrame,
    *,
    annotator_group: str | None = None,
    source: str | None = None,
    dataset: str | None = None,
    features: Sequence[str],
    value: str = "value",
) -> pd.DataFrame:
    """Pivot one group's (or source's) annotations to one row per lesion, one column per
    (feature, annotator), named ``<feature>:<annotator>``, for the disagreement experiment.
    """
    frame = select_annotations(annotations, annotator_group=annotator_group, source=source, dataset=dataset,
                               features=features)
    if frame.empty:
        raise ValueError(
            f"no annotations for group={annotator_group!r} source={source!r} dataset={dataset!r} "
            f"features={list(features)}"
        )
    wide = frame.pivot_table(index="image_id", columns=["feature", "annotator"], values=value, aggfunc="first")
    order = sorted(wide.columns, key=lambda c: (list(features).index(c[0]), _annotator_order(c[1])))
    wide = wide[order]
    wide.columns = [f"{f}:{a}" for f, a in wide.columns]
    return wide


def _annotator_order(annotator: str) -> tuple[int, str]:
    """s2 before s10; crowd ids i/ii/iii sort by length first, which is also their numeric order."""
    digits = "".join(ch for ch in annotator if ch.isdigit())
    return (int(digits) if digits else len(annotator), annotator)

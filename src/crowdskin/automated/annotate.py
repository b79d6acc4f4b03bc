"""Annotating a shard of images: one row per image with a status, never an exception.

Shards are a deterministic split of the sorted image ids (shard k = ids[k*size:(k+1)*size]). The
plan is a Snakemake checkpoint (the image count is known only after ingestion); each shard job's
inputs are its own masks and images, so a changed mask re-runs only its shard.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from crowdskin.tables import ANNOTATIONS, AUTOMATED

from .asymmetry import asymmetry
from .border import border
from .color import COLOR_NAMES, color
from .preprocessing import BadInputError, find_lesion, mask_on_image, read_mask, read_rgb, resize_mask


@dataclass(frozen=True)
class Settings:
    """The algorithms' settings from the config's `automated` section (defaults in its schema)."""

    variant: str
    symmetry_level: float
    asymmetry_max_side: int
    border_sigma: float
    border_window: int
    n_segments: int
    color_max_pixels: int
    color_distance: float
    color_share: float

    @classmethod
    def from_config(cls, section: dict) -> Settings:
        """From the validated section; its other keys (shard_size) are not the algorithms'."""
        return cls(**{f.name: section[f.name] for f in fields(cls)})


def _path(value: object, root: Path) -> Path | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value == "":
        return None
    path = Path(str(value))
    return path if path.is_absolute() else root / path


def annotate_image(image_id: str, dataset: str, image_path: Path | None, mask_path: Path | None,
                   settings: Settings) -> dict:
    """One output row. Every failure becomes a reason; `status` says how much was scored."""
    row: dict = {"image_id": image_id, "dataset": dataset, "asymmetry_raw": None, "asymmetry_class": None,
                 "border_score": None, "color_score": None, **{f"color_{n}": None for n in COLOR_NAMES},
                 "component_count": None}
    notes: list[str] = []
    problems: list[str] = []
    lesion = None
    mask = None
    if mask_path is None:
        problems.append("no mask: no asymmetry, border or color")
    else:
        try:
            mask = read_mask(mask_path, notes)
            lesion = find_lesion(mask, notes)
            row["component_count"] = lesion.component_count
        except BadInputError as error:
            problems.append(f"mask: {error}")
    if lesion is not None:
        try:
            a = asymmetry(lesion, variant=settings.variant, symmetry_level=settings.symmetry_level,
                          max_side=settings.asymmetry_max_side)
            row["asymmetry_raw"], row["asymmetry_class"] = a.raw, a.score
            if a.note:
                notes.append(a.note)
        except BadInputError as error:
            problems.append(str(error))
        except Exception as error:  # noqa: BLE001 - a shard never dies on one image
            problems.append(f"asymmetry: unexpected {type(error).__name__}: {error}")
        try:
            b = border(lesion, variant=settings.variant, sigma=settings.border_sigma, window=settings.border_window)
            row["border_score"] = b.score
        except BadInputError as error:
            problems.append(str(error))
        except Exception as error:  # noqa: BLE001 - likewise: the error becomes the row's reason
            problems.append(f"border: unexpected {type(error).__name__}: {error}")
    if image_path is None:
        problems.append("no image: no color score")
    elif mask is not None and lesion is not None:
        try:
            rgb = read_rgb(image_path, notes)
            image_mask = resize_mask(mask_on_image(mask, image_path, notes), rgb.shape[:2], notes)
            c = color(rgb, image_mask, variant=settings.variant, n_segments=settings.n_segments,
                       max_pixels=settings.color_max_pixels, distance_threshold=settings.color_distance,
                       share_threshold=settings.color_share)
            row["color_score"] = c.score
            row.update({f"color_{name}": flag for name, flag in c.present.items()})
        except BadInputError as error:
            problems.append(f"image: {error}" if not str(error).startswith("color") else str(error))
        except Exception as error:  # noqa: BLE001 - likewise: the error becomes the row's reason
            problems.append(f"color: unexpected {type(error).__name__}: {error}")
    scored = [row[k] is not None for k in ("asymmetry_class", "border_score", "color_score")]
    if all(scored):
        row["status"] = "warning" if notes else "ok"
    elif any(scored):
        row["status"] = "partial"
    else:
        row["status"] = "failed"
    reasons = problems + notes
    row["reason"] = "; ".join(reasons) if reasons else None
    return row


def _annotate_safely(args: tuple) -> dict:
    image_id, dataset, image_path, mask_path, settings = args
    try:
        return annotate_image(image_id, dataset, image_path, mask_path, settings)
    except Exception as error:  # noqa: BLE001 - last line of defence (e.g. MemoryError in a decoder)
        return {"image_id": image_id, "dataset": dataset, "status": "failed",
                "reason": f"unexpected {type(error).__name__}: {error}"}


def annotate_table(images: pd.DataFrame, settings: Settings, *, root: Path = Path("."),
                   workers: int = 1) -> pd.DataFrame:
    """Annotate every row of an images table (image_id, dataset, image_path, mask_path)."""
    jobs = [
        (str(r.image_id), str(r.dataset), _path(r.image_path, root), _path(r.mask_path, root), settings)
        for r in images.itertuples(index=False)
    ]
    _single_threaded()
    if workers > 1 and len(jobs) > 1:
        with _worker_pool(min(workers, len(jobs))) as pool:
            rows = list(pool.map(_annotate_safely, jobs))
    else:
        rows = [_annotate_safely(job) for job in jobs]
    return to_table(rows)


def _worker_pool(workers: int) -> Executor:
    """Processes forked from this one on Linux: they start with its imports (no second import of
    the scientific stack), and they run in parallel where threads do not quite, since libspng, the
    masks' decoder, holds the GIL while it decodes (threads were 7-12 % slower on the real sample's
    largest masks). Elsewhere, where forking is unsafe or missing, threads: OpenCV, NumPy and SLIC
    release the GIL for most of the work."""
    if sys.platform.startswith("linux"):
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(max_workers=workers)


def _single_threaded() -> None:
    import cv2

    cv2.setNumThreads(1)


def to_table(rows: Sequence[dict]) -> pd.DataFrame:
    columns = list(AUTOMATED.columns)
    frame = pd.DataFrame(list(rows), columns=columns)
    if frame.empty:
        frame = frame.astype({c: "object" for c in columns})
    return AUTOMATED.validate(frame)


def to_annotations(table: pd.DataFrame, origin_file: str) -> pd.DataFrame:
    """Long rows in the annotations schema (source='automated'); asymmetry value = the 0/1/2 class,
    as the study's published scores that it regressed. origin_row = 1-based row of `origin_file`."""
    records = []
    columns = {"asymmetry": "asymmetry_class", "border": "border_score", "color": "color_score"}
    positions = {name: list(table.columns).index(name) + 1 for name in columns.values()}
    for number, row in enumerate(table.itertuples(index=False), start=1):
        for feature, column in columns.items():
            value = getattr(row, column)
            if value is None or pd.isna(value):
                continue
            records.append({
                "image_id": row.image_id, "dataset": row.dataset, "source": "automated", "feature": feature,
                "annotator_group": "automated", "annotator": "automated", "value": float(value),
                "origin_file": origin_file, "origin_row": number, "origin_column": f"{positions[column]}:{column}",
            })
    frame = pd.DataFrame.from_records(records, columns=[
        "image_id", "dataset", "source", "feature", "annotator_group", "annotator", "value",
        "origin_file", "origin_row", "origin_column"])
    return ANNOTATIONS.validate(frame)


NO_SHARD = -1  # a plan row with nothing to compute: no job reads it


def plan_shards(images: pd.DataFrame, shard_size: int) -> pd.DataFrame:
    """image_id, dataset, image_path, mask_path, shard.

    Shards hold work: the lesions with a mask, in sorted-id order, `shard_size` per shard. A lesion
    without a mask has nothing to score (asymmetry and border need the mask, colour the lesion it
    outlines), so it gets shard NO_SHARD and no job: `rows_without_work` gives its `failed` row.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    ordered = images.sort_values("image_id", kind="stable").reset_index(drop=True)
    plan = ordered[["image_id", "dataset", "image_path", "mask_path"]].copy()
    for column in ("image_path", "mask_path"):
        plan[column] = plan[column].astype(object).where(plan[column].notna(), None)
    has_mask = plan["mask_path"].map(lambda value: _path(value, Path(".")) is not None).to_numpy(bool)
    plan["shard"] = NO_SHARD
    plan.loc[has_mask, "shard"] = np.arange(int(has_mask.sum())) // shard_size
    return plan


def rows_without_work(plan: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The rows of the lesions that no shard scores (no mask), each `failed` with its reason."""
    unplanned = plan[plan["shard"] == NO_SHARD]
    return annotate_table(unplanned[["image_id", "dataset", "image_path", "mask_path"]], settings)

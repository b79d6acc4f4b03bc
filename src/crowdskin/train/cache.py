"""Every trainable image decoded and resized once; epochs read the small uint8 array.

The cache is one `.npy` array (N x size x size x 3, uint8, RGB) plus an index table
(image_id, row, reason): row -1 and a reason for an image that could not be read, so a broken file
is reported rather than dropped. A manifest beside them (`<array>.manifest.json`, written last)
records the array's byte size, shape and a SHA-256 of every row, each lesion's row and the label it
had when the cache was built; every reader checks the files against it, so a truncated, edited or
stale cache is refused naming the file and the lesion instead of being trained on.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from crowdskin.pixels import ImageRefusedError, read_rgb8

log = logging.getLogger(__name__)

# What a refusal tells the user to do: Snakemake never rebuilds an output that exists by itself.
REBUILD = "delete it, or rebuild it with `snakemake --forcerun train_cache` (train_cache_clean for the clean cache)"
# np.save's header is at most a few hundred bytes; the margin also covers the index and manifest.
WRITE_MARGIN_BYTES = 1 << 20


class CacheError(ValueError):
    """A cache that does not match its manifest, or one that cannot be written."""


class CacheSpaceError(CacheError):
    """The cache's folder has less free space than the cache needs."""


def manifest_path(array_path: str | Path) -> Path:
    array_path = Path(array_path)
    return array_path.with_name(array_path.stem + ".manifest.json")


def _temp_path(array_path: Path) -> Path:
    # A fixed name, so the next build finds and removes what an interrupted one left.
    return array_path.with_name(array_path.name + ".tmp.npy")


def _row_digests(array: np.ndarray) -> list[str]:
    # Per row rather than one digest of the file, so a mismatch names the lesion. SHA-256 is the
    # fastest of hashlib's digests on CPUs with SHA extensions (1.8 GB/s here, blake2b 0.9).
    return [hashlib.sha256(np.ascontiguousarray(row).data).hexdigest()[:16] for row in array]


def check_space(folder: str | Path, nbytes: int) -> None:
    """Raise CacheSpaceError naming `folder` where it has less free space than `nbytes` needs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < nbytes + WRITE_MARGIN_BYTES:
        raise CacheSpaceError(_no_space(folder, nbytes, free))


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB ({nbytes} bytes)"


def _no_space(folder: Path, nbytes: int, free: int | None) -> str:
    have = f"{_size(free)} free" if free is not None else "the disk filled up while writing"
    return (f"no room for the image cache in {folder}: it needs {_size(nbytes)} "
            f"(+{WRITE_MARGIN_BYTES / 2**20:.0f} MiB margin), {have}; free space there or move the results folder")


def load_resized(path: str | Path, size: int) -> np.ndarray:
    """RGB uint8 image of `size` x `size` (the study squashes to a square too, no padding), upright
    and 16 bits scaled as every reader sees it (crowdskin.pixels)."""
    # JPEG DCT scaling: decoding a 4000 px photo at 1/8 scale costs a fraction of a full decode,
    # and it never goes below the requested size, so quality after INTER_AREA is unchanged.
    rgb = read_rgb8(path, draft_size=(size, size))
    interpolation = cv2.INTER_AREA if min(rgb.shape[:2]) >= size else cv2.INTER_CUBIC
    return cv2.resize(rgb, (size, size), interpolation=interpolation)


def build_image_cache(
    images: pd.DataFrame, size: int, *, root: str | Path = ".", threads: int = 1
) -> tuple[np.ndarray, pd.DataFrame]:
    """Resize `images` (image_id, image_path; paths relative to `root`) to `size` px.

    Returns (array, index). Unreadable images get row -1 and the reason in the index.
    """
    ids = images["image_id"].astype(str).tolist()
    paths = [Path(root) / str(p) for p in images["image_path"]]

    def read(path: Path) -> np.ndarray | str:
        try:
            return load_resized(path, size)
        except ImageRefusedError as error:  # its message names the file
            return f"cannot read image {error}"
        except (OSError, ValueError, cv2.error) as error:
            return f"cannot read image {path}: {error}"

    # PIL and OpenCV release the GIL while decoding and resizing, so threads scale.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(read, paths))
    array = np.zeros((sum(not isinstance(r, str) for r in results), size, size, 3), dtype=np.uint8)
    rows, reasons, next_row = [], [], 0
    for result in results:
        if isinstance(result, str):
            rows.append(-1)
            reasons.append(result)
        else:
            array[next_row] = result
            rows.append(next_row)
            reasons.append(None)
            next_row += 1
    index = pd.DataFrame({"image_id": ids, "row": rows, "reason": pd.array(reasons, dtype="string")})
    return array, index


def write_cache(array: np.ndarray, index: pd.DataFrame, array_path: str | Path, index_path: str | Path, *,
                labels: Mapping[str, Any] | None = None) -> None:
    """Write the array, its index and its manifest; `labels` (image_id -> abnormal) go in the manifest.

    The array goes to a temporary name and is renamed when whole, the manifest last, so a killed or
    failed build never leaves files a reader takes as a cache. A temporary file a killed build left
    is removed first; one too big for the disk is refused before writing (CacheSpaceError), and a
    disk that fills while writing gives the same error with the temporary file removed.
    """
    array_path, index_path = Path(array_path), Path(index_path)
    manifest = manifest_path(array_path)
    tmp, tmp_index = _temp_path(array_path), index_path.with_name(index_path.name + ".tmp")
    tmp_manifest = manifest.with_name(manifest.name + ".tmp")
    for leftover in (tmp, tmp_index, tmp_manifest):
        if leftover.exists():
            log.warning("removing %s, left by an interrupted cache build", leftover)
            leftover.unlink()
    manifest.unlink(missing_ok=True)  # until the new one is written, the old files are not a cache
    check_space(array_path.parent, array.nbytes)
    known = {str(k): (None if pd.isna(v) else int(v)) for k, v in ({} if labels is None else labels).items()}
    ids = index["image_id"].astype(str).tolist()
    try:
        np.save(tmp, array)
        os.replace(tmp, array_path)
        index.to_parquet(tmp_index, index=False)
        os.replace(tmp_index, index_path)
        payload = {
            "array": {"file": array_path.name, "bytes": array_path.stat().st_size, "shape": list(array.shape),
                      "dtype": str(array.dtype), "row_sha256": _row_digests(array)},
            "index": {"file": index_path.name},
            "rows": dict(zip(ids, (int(r) for r in index["row"]), strict=True)),
            "labels": {i: known.get(i) for i in ids},
        }
        tmp_manifest.write_text(json.dumps(payload))
        os.replace(tmp_manifest, manifest)
    except OSError as error:
        for partial in (tmp, tmp_index, tmp_manifest):
            partial.unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise CacheSpaceError(_no_space(array_path.parent, array.nbytes, None)) from error
        raise


def _few(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return f"{shown} (+{len(ids) - limit} more)" if len(ids) > limit else shown


def read_cache(array_path: str | Path, index_path: str | Path, *, manifest: str | Path | None = None,
               labels: Mapping[str, Any] | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Memory-mapped array (a job reads only its rows) and the index, checked against the manifest
    (by default `manifest_path(array_path)`): byte size, shape, every row's digest, every lesion's row
    and, given `labels` (image_id -> abnormal, the images table the reader uses), every label.
    Raises CacheError naming the file, the lesion and what to do."""
    array_path, index_path = Path(array_path), Path(index_path)
    manifest = Path(manifest) if manifest is not None else manifest_path(array_path)
    try:
        expected = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise CacheError(f"cache {array_path} has no manifest {manifest} (written last, so its build did not "
                         f"finish, or an older version wrote it): {REBUILD}") from None
    except json.JSONDecodeError as error:
        raise CacheError(f"cache manifest {manifest} is not valid JSON ({error}): {REBUILD}") from None
    index = pd.read_parquet(index_path)
    rows = {str(i): int(r) for i, r in zip(index["image_id"], index["row"], strict=True)}
    if rows != expected["rows"]:
        differ = sorted(set(rows.items()) ^ set(expected["rows"].items()))
        lesion = differ[0][0]
        raise CacheError(f"cache index {index_path} gives lesion {lesion!r} row {rows.get(lesion)}, its manifest "
                         f"{manifest} row {expected['rows'].get(lesion)} ({len({i for i, _ in differ})} lesion(s) "
                         f"differ): {REBUILD}")
    by_row = {r: i for i, r in rows.items() if r >= 0}
    shape, size = expected["array"]["shape"], array_path.stat().st_size
    if size != expected["array"]["bytes"]:
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(expected["array"]["dtype"]).itemsize
        header = expected["array"]["bytes"] - row_bytes * shape[0]
        lost = [by_row[r] for r in range(shape[0]) if header + (r + 1) * row_bytes > size and r in by_row]
        what = f"the images of lesion(s) {_few(lost)} lie past its end" if lost else "its content moved"
        raise CacheError(f"cache {array_path} is {size} bytes, its manifest {manifest} says "
                         f"{expected['array']['bytes']} (truncated or replaced: {what}): {REBUILD}")
    try:
        array = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise CacheError(f"cache {array_path} cannot be read ({error}): {REBUILD}") from None
    if list(array.shape) != shape or str(array.dtype) != expected["array"]["dtype"]:
        raise CacheError(f"cache {array_path} holds {array.dtype} {list(array.shape)}, its manifest {manifest} says "
                         f"{expected['array']['dtype']} {shape}: {REBUILD}")
    changed = [by_row.get(r, f"row {r}") for r, (got, want)
               in enumerate(zip(_row_digests(array), expected["array"]["row_sha256"], strict=True)) if got != want]
    if changed:
        raise CacheError(f"cache {array_path}: the image of lesion(s) {_few(changed)} differs from when the cache "
                         f"was built (digests in {manifest}): {REBUILD}")
    if labels is not None:
        built = expected["labels"]
        flipped = sorted(str(i) for i, label in labels.items()
                         if built.get(str(i)) is not None and not pd.isna(label) and int(label) != built[str(i)])
        if flipped:
            first = flipped[0]
            raise CacheError(f"cache {array_path} was built with label {built[first]} for lesion {first!r}, the images "
                             f"table now says {int(labels[first])} ({len(flipped)} lesion(s) differ: "
                             f"{_few(flipped)}; labels in {manifest}): {REBUILD}")
    return array, index

"""Every trainable image decoded and resized once; epochs read the small uint8 array.

The cache is one `.npy` array (N x size x size x 3, uint8, RGB) plus an index table
(image_id, row, reason): row -1 and a reason for an image that could not be read, so a broken file
is reported rather than dropped.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from crowdskin.pixels import ImageRefusedError, read_rgb8


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


def write_cache(array: np.ndarray, index: pd.DataFrame, array_path: str | Path, index_path: str | Path) -> None:
    """Write atomically (temp file + rename) so a killed job never leaves a half-written cache."""
    array_path, index_path = Path(array_path), Path(index_path)
    array_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = array_path.with_name(array_path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, array_path)
    index.to_parquet(index_path, index=False)


def read_cache(array_path: str | Path, index_path: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Memory-mapped array (a job reads only its rows) and the index."""
    return np.load(array_path, mmap_mode="r"), pd.read_parquet(index_path)

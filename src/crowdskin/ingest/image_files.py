"""Every registered image decoded once before its lesion is kept.

A file that is empty, not an image (an HTML error page saved as .jpg), truncated or over Pillow's
decompression-bomb limit would otherwise pass the ingest and fail later (the training cache) or
never (a fold scored on a grey square). JPEGs decode at 1/8 scale (the whole stream is still
read), in threads: Pillow releases the GIL while decoding.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from crowdskin.ingest.common import Counts, Quarantine
from crowdskin.pixels import ImageRefusedError, decode_check


def _why_not(path: str) -> str | None:
    try:
        decode_check(path)
    except ImageRefusedError as error:
        return str(error)
    return None


def refuse_undecodable_images(
    images: pd.DataFrame, quarantine: Quarantine, counts: Counts, *, threads: int | None = None
) -> tuple[pd.DataFrame, set[str]]:
    """`images` less the lesions whose image file does not decode, each quarantined under its
    diagnosis record (origin_file, origin_row, origin_column) with the file named; and their ids."""
    if images.empty or "image_path" not in images:
        return images, set()
    with_file = images[images["image_path"].notna()]
    workers = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(_why_not, with_file["image_path"].astype(str)))
    refused: list[int] = []
    for index, reason in zip(with_file.index, reasons, strict=True):
        if reason is None:
            continue
        row = images.loc[index]
        quarantine.add("images", row["origin_file"], int(row["origin_row"]), row["origin_column"],
                       row["image_path"], f"image cannot be decoded: {reason}", row["image_id"])
        counts.requarantine(row["origin_file"], "images")
        refused.append(index)
    return images.drop(index=refused).reset_index(drop=True), set(images.loc[refused, "image_id"])

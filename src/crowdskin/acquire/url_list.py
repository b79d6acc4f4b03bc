"""Datasets distributed as a CSV of image URLs and labels (the way CAN4000 is shared).

A dead link is not fatal: it is recorded with its reason and the rest goes on. The result is a
`labels.csv` beside the images (image_id, label, url, file, status, reason) that the ingest reads.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pandas as pd

from crowdskin.acquire.fetch import DownloadSettings, FileRecord, RefusedURLError, check_scheme, download
from crowdskin.files import link_or_copy
from crowdskin.pixels import ImageRefusedError, decode_check

_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")


def _image_id(row: pd.Series, url: str, id_column: str | None) -> str:
    if id_column:
        return _SAFE_ID.sub("_", str(row[id_column]))
    return _SAFE_ID.sub("_", PurePosixPath(urlparse(url).path).stem) or "image"


def _unique(image_id: str, taken: set[str]) -> str:
    """`image_id`, or with the first free `_2`, `_3`, ... suffix: two URLs ending in the same file
    name must not write the same file. Compared case-folded, as a macOS or Windows disk would."""
    candidate, n = image_id, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{image_id}_{n}"
    return candidate


def fetch_url_list(
    csv: str | Path,
    name: str,
    raw_root: str | Path,
    *,
    url_column: str = "url",
    label_column: str = "label",
    id_column: str | None = None,
    mirror: str | Path | None = None,
    settings: DownloadSettings,
) -> tuple[pd.DataFrame, list[FileRecord]]:
    """Fetch every image of the list into `raw_root/url_lists/<name>/images/`.

    With `mirror`, images are taken from `<mirror>/url_lists/<name>/images/<file name>` instead.
    Returns the labels table (one row per input row, with status) and download-report records.

    A row's status is `ok` only for an image decoded in full within the pixel cap; otherwise
    `refused` (a URL scheme outside `settings.allowed_schemes`, a redirect to one, or a duplicate
    id in `id_column`: nothing is fetched), `failed` (the download failed) or `invalid` (the file
    is empty, not an image, truncated or over the cap: it is deleted). Without `id_column`, ids
    clashing with an earlier row's get a `_2`, `_3`, ... suffix, in the list's order.
    """
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    for column in (url_column, label_column) + ((id_column,) if id_column else ()):
        if column not in table.columns:
            raise ValueError(f"{csv}: missing required column {column!r} (has {list(table.columns)})")
    folder = Path(raw_root) / "url_lists" / name
    images = folder / "images"
    rows, records = [], []
    taken: dict[str, int] = {}  # case-folded id -> the row that took it
    for number, row in enumerate(table.itertuples(index=False), start=1):
        row = pd.Series(row._asdict())
        url = row[url_column].strip()
        image_id = _image_id(row, url, id_column)
        duplicate_of = taken.get(image_id.casefold()) if id_column else None
        if not id_column:
            image_id = _unique(image_id, set(taken))
        taken.setdefault(image_id.casefold(), number)
        suffix = PurePosixPath(urlparse(url).path).suffix.lower() or ".jpg"
        relative = f"url_lists/{name}/images/{image_id}{suffix}"
        target = Path(raw_root) / relative
        status, reason, digest = "ok", "", ""
        try:
            if not url:
                raise ValueError("empty URL")
            if duplicate_of is not None:
                raise RefusedURLError(f"duplicate image id {image_id!r} (column {id_column!r}): "
                                      f"already used by row {duplicate_of}")
            check_scheme(url, settings.allowed_schemes)
            if mirror is not None:
                src = Path(mirror) / relative
                if not src.is_file():
                    raise FileNotFoundError(f"not in the mirror: {src}")
                link_or_copy(src, target)
                digest = ""
            else:
                digest = download(url, target, settings=settings)
            decode_check(target, settings.max_image_pixels)
        except RefusedURLError as error:
            status, reason = "refused", str(error)
        except ImageRefusedError as error:
            target.unlink(missing_ok=True)
            status, reason = "invalid", f"{url}: {error}"
        except (OSError, ValueError, RuntimeError) as error:
            status, reason = "failed", f"{type(error).__name__}: {error}"
        rows.append({"image_id": image_id, "label": row[label_column], "url": url,
                     "file": relative if status == "ok" else "", "status": status, "reason": reason,
                     "row": number})
        records.append(FileRecord(f"url_list:{name}", relative, "unverified" if status == "ok" else "failed",
                                  reason or "no checksum known", target.stat().st_size if status == "ok" else 0,
                                  digest))
    labels = pd.DataFrame(rows, columns=["image_id", "label", "url", "file", "status", "reason", "row"])
    images.mkdir(parents=True, exist_ok=True)
    labels.to_csv(folder / "labels.csv", index=False)
    return labels, records

"""Reading the crowd layer's inputs and writing its outputs (used by workflow/scripts/crowd_*.py)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pandas as pd

from crowdskin import tables

log = logging.getLogger("crowdskin.crowd")


def setup_log(path: str | os.PathLike[str] | None) -> None:
    """Send this stage's log lines (and warnings) to the rule's log file."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w", encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers, force=True)
    logging.captureWarnings(True)


def read_annotations(*paths: str | os.PathLike[str]) -> pd.DataFrame:
    """Concatenate annotation tables (ingest's and the automated stage's), validated."""
    frames = [tables.read_table(p, tables.ANNOTATIONS) for p in paths]
    frames = [f for f in frames if len(f)]
    if not frames:
        return tables.empty(tables.ANNOTATIONS)
    return pd.concat(frames, ignore_index=True)


def write_csv_atomic(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write beside `path` and rename, so a reader never sees half a table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

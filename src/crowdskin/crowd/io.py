"""Reading the crowd layer's inputs (used by workflow/scripts/crowd_*.py)."""

from __future__ import annotations

import os

import pandas as pd

from crowdskin import tables


def read_annotations(*paths: str | os.PathLike[str]) -> pd.DataFrame:
    """Concatenate annotation tables (ingest's and the automated stage's), validated."""
    frames = [tables.read_table(p, tables.ANNOTATIONS) for p in paths]
    frames = [f for f in frames if len(f)]
    if not frames:
        return tables.empty(tables.ANNOTATIONS)
    return pd.concat(frames, ignore_index=True)

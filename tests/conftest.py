"""Shared fixtures. Real-data tests read ../shared/data in place and skip when it is absent."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CROWDSKIN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public sample (../shared/data); skips the test when it is not beside the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data is absent on this machine)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


# --- independent ingest bookkeeping ------------------------------------------------------------
# A reader of its own (the csv module), so the balance below does not trust the ingest's counts.

def _csv_rows(path: Path, delimiter: str) -> list[list[str]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in row)]


def count_records(path: Path, delimiter: str = ",") -> int:
    """Non-blank records of a delimited file, header excluded."""
    return len(_csv_rows(path, delimiter)) - 1


def count_values(path: Path, delimiter: str, id_column: str | None = None) -> int:
    """Non-empty cells outside the ID column (`id_column` by name; the first column when None)."""
    header, *records = _csv_rows(path, delimiter)
    at = [h.strip() for h in header].index(id_column) if id_column else 0
    return sum(1 for row in records for i, cell in enumerate(row) if i != at and cell.strip())


def count_table_records(path: Path) -> int:
    """Records of a CSV table, or rows of a Parquet one (the generic formats take either)."""
    return len(pd.read_parquet(path)) if path.suffix.lower() == ".parquet" else count_records(path)


def ingest_balance(ingest_config: dict, raw_root: Path, result) -> pd.DataFrame:
    """Per input file of `ingest_config`: units in, counted from the file itself (records of the
    diagnosis tables and MTurk exports, non-empty values of the crowd and student files); rows of
    the output table with that origin_file; rows of the quarantine with that origin_file."""
    raw_root = Path(raw_root)
    files: list[tuple[Path, str, int]] = []
    for entry in ingest_config.get("diagnosis", []):
        if entry.get("format") != "ph2":  # PH2_dataset.txt is not a delimited file
            path = raw_root / entry["csv"]
            files.append((path, "images", count_table_records(path)))
    for entry in ingest_config.get("crowd", []):
        for name in entry["files"].values():
            path = raw_root / entry["dir"] / name
            files.append((path, "annotations", count_values(path, ",", "ID")))
    for entry in ingest_config.get("student", []):
        for path in sorted((raw_root / entry["dir"]).glob("*/group*.csv")):
            files.append((path, "annotations", count_values(path, ";")))
    for entry in ingest_config.get("annotations", []):
        path = raw_root / entry["file"]
        files.append((path, "annotations", count_table_records(path)))
    for entry in ingest_config.get("mturk", []):
        for path in sorted((raw_root / entry["dir"]).glob("*.csv")):
            files.append((path, "mturk_assignments", count_records(path)))
    kept = {name: getattr(result, name).origin_file.value_counts()
            for name in ("images", "annotations", "mturk_assignments")}
    quarantined = result.quarantine.origin_file.value_counts()
    return pd.DataFrame([
        {"origin_file": str(path), "table": table, "n_in": n_in, "n_kept": int(kept[table].get(str(path), 0)),
         "n_quarantined": int(quarantined.get(str(path), 0))}
        for path, table, n_in in files])


def assert_ingest_balances(ingest_config: dict, raw_root: Path, result) -> pd.DataFrame:
    """Independent in = kept + quarantined for every file, and ingest_counts agrees with it."""
    sheet = ingest_balance(ingest_config, raw_root, result)
    unbalanced = sheet[sheet.n_in != sheet.n_kept + sheet.n_quarantined]
    assert unbalanced.empty, f"units in != kept + quarantined:\n{unbalanced.to_string()}"
    counts = result.counts.set_index("origin_file")[["n_in", "n_kept", "n_quarantined"]].sort_index()
    pd.testing.assert_frame_equal(counts, sheet.set_index("origin_file")[counts.columns].sort_index(),
                                  check_dtype=False)
    return sheet

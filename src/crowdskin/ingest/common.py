"""Pieces shared by the ingesters: the quarantine log, per-file counts, reading text tables."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crowdskin import tables


class MalformedFileError(ValueError):
    """A whole file cannot be read (encoding, missing column); the message names file and column."""


@dataclass
class Quarantine:
    """Rows that could not be used, each with a reason (the quarantine table)."""

    stage: str = "ingest"
    rows: list[dict[str, object]] = field(default_factory=list)

    def add(
        self,
        table: str,
        origin_file: str | Path,
        row: int | None,
        column: str | None,
        raw_value: object,
        reason: str,
        record_id: str | None = None,
    ) -> None:
        self.rows.append({
            "stage": self.stage, "table": table, "origin_file": str(origin_file), "row": row,
            "column": column, "raw_value": None if raw_value is None else str(raw_value),
            "reason": reason, "record_id": record_id,
        })

    def frame(self) -> pd.DataFrame:
        if not self.rows:
            return tables.empty(tables.QUARANTINE)
        return tables.conform(pd.DataFrame(self.rows), tables.QUARANTINE)


@dataclass
class Counts:
    """Per input file: units in = kept + quarantined (units: records, or non-empty values)."""

    rows: list[dict[str, object]] = field(default_factory=list)

    def add(self, origin_file: str | Path, table: str, unit: str, n_in: int, n_kept: int, n_quarantined: int) -> None:
        if n_in != n_kept + n_quarantined:
            raise AssertionError(f"{origin_file}: {n_in} {unit} in but {n_kept} kept + {n_quarantined} quarantined")
        self.rows.append({"origin_file": str(origin_file), "table": table, "unit": unit,
                          "n_in": n_in, "n_kept": n_kept, "n_quarantined": n_quarantined})

    def requarantine(self, origin_file: str | Path, table: str) -> None:
        """One unit of `origin_file` counted as kept turned out unusable after all (its image does
        not decode): moved to quarantined."""
        for row in self.rows:
            if row["origin_file"] == str(origin_file) and row["table"] == table and row["n_kept"] > 0:
                row["n_kept"] -= 1
                row["n_quarantined"] += 1
                return
        raise AssertionError(f"{origin_file}: no kept {table} unit to quarantine")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["origin_file", "table", "unit", "n_in", "n_kept", "n_quarantined"])


def read_text(path: Path) -> str:
    """File contents as text; UTF-8 (with or without BOM), falling back to cp1252 as Excel writes."""
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise MalformedFileError(f"{path}: unreadable encoding (neither UTF-8 nor Windows-1252)")


def read_records(path: Path, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    """Header and data records of a delimited file, every field as a stripped string."""
    reader = csv.reader(io.StringIO(read_text(path)), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise MalformedFileError(f"{path}: empty file, no header") from None
    return header, [[c.strip() for c in record] for record in reader if any(c.strip() for c in record)]


def require_columns(path: Path, header: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise MalformedFileError(f"{path}: missing required column(s) {missing}; the header is {header}")


def parse_number(raw: str) -> float:
    """A finite float from a cell, or ValueError.

    A comma is not read as a decimal point: in the student files "1,2" is a set of color
    categories, not 1.2.
    """
    value = float(raw.strip())
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {raw!r}")
    return value


def snake_case(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")

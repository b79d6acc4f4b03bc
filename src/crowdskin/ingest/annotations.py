"""ENHANCE annotation files (crowd and student) into the long `annotations` table.

Unit of accounting: a non-empty value cell. Empty cells mean "not annotated" and are not rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from crowdskin.ingest.common import (
    Counts,
    MalformedFileError,
    Quarantine,
    parse_number,
    read_records,
    require_columns,
    snake_case,
)

#: image_id -> dataset, or None when the lesion is unknown (and not to be registered)
LesionLookup = Callable[[str, str, str], str | None]


def _emit(
    out: list[dict[str, object]], seen: dict[tuple, str], quarantine: Quarantine, *, path: Path, number: int,
    column: str, raw: str, image_id: str, dataset: str, source: str, feature: str, group: str, annotator: str,
) -> bool:
    try:
        value = parse_number(raw)
    except ValueError:
        quarantine.add("annotations", path, number, column, raw, "annotation is not a number", image_id)
        return False
    key = (image_id, source, feature, group, annotator)
    if key in seen:
        quarantine.add("annotations", path, number, column, raw,
                       f"duplicate annotation of {image_id} by {group}/{annotator} ({feature}); first at {seen[key]}",
                       image_id)
        return False
    seen[key] = f"{path.name} record {number}"
    out.append({"image_id": image_id, "dataset": dataset, "source": source, "feature": feature,
                "annotator_group": group, "annotator": annotator, "value": value,
                "origin_file": str(path), "origin_row": number, "origin_column": column})
    return True


def ingest_crowd(entries: list[dict], raw_root: Path, lookup: LesionLookup, quarantine: Quarantine,
                 counts: Counts, seen: dict[tuple, str]) -> pd.DataFrame:
    """ENHANCE crowd files `ID,i,ii,iii`: one file per feature, one column per worker slot."""
    out: list[dict[str, object]] = []
    for entry in entries:
        group = f"crowd/{entry['dataset']}"
        for feature, name in entry["files"].items():
            path = raw_root / entry["dir"] / name
            if not path.is_file():
                raise MalformedFileError(f"{path}: crowd file not found (ingest.crowd, dataset {entry['dataset']})")
            header, records = read_records(path)
            require_columns(path, header, ["ID"])
            id_at = header.index("ID")
            workers = [(i, h) for i, h in enumerate(header) if i != id_at and h]
            unnamed = [i for i, h in enumerate(header) if i != id_at and not h]
            n_in = n_kept = 0
            for number, record in enumerate(records, start=1):
                record = record + [""] * (len(header) - len(record))
                image_id = record[id_at]
                cells = [(i, h, record[i]) for i, h in workers if record[i] != ""]
                extra = [c for c in record[len(header):] if c]
                headless = [(i, record[i]) for i in unnamed if record[i] != ""]
                n_in += len(cells) + len(extra) + len(headless)
                for raw in extra:
                    quarantine.add("annotations", path, number, None, raw, "value in a column with no header", image_id)
                for i, raw in headless:
                    quarantine.add("annotations", path, number, f"{i + 1}:", raw, "value in a column with no header",
                                   image_id)
                dataset = lookup(image_id, entry["dataset"], str(path)) if image_id else None
                if dataset is None:
                    for i, h, raw in cells:
                        quarantine.add("annotations", path, number, f"{i + 1}:{h}", raw,
                                       "lesion unknown to the image table" if image_id else "empty ID",
                                       image_id or None)
                    continue
                for i, h, raw in cells:
                    n_kept += _emit(out, seen, quarantine, path=path, number=number, column=f"{i + 1}:{h}", raw=raw,
                                    image_id=image_id, dataset=dataset, source="crowd", feature=feature,
                                    group=group, annotator=h)
            counts.add(path, "annotations", "values", n_in, n_kept, n_in - n_kept)
    return pd.DataFrame(out)


def read_data_types(path: Path) -> dict[int, list[str]]:
    """group number -> feature type per column position (1-based after ID; '' where unused)."""
    header, records = read_records(path, delimiter=";")
    require_columns(path, header, ["group_num"])
    types: dict[int, list[str]] = {}
    for number, record in enumerate(records, start=1):
        try:
            group = int(record[0])
        except ValueError:
            raise MalformedFileError(
                f"{path}: record {number}, column group_num: not a group number: {record[0]!r}") from None
        types[group] = [snake_case(t) for t in record[1:]]
    return types


def ingest_student(entries: list[dict], raw_root: Path, lookup: LesionLookup, quarantine: Quarantine,
                   counts: Counts, seen: dict[tuple, str]) -> pd.DataFrame:
    """ENHANCE student folders: `<year>/groupNN.csv` mapped by column *position* via `<year>/data_types.csv`.

    Headers are English or Dutch and unreliable, so the header is only echoed into origin_column.
    The k-th column of a feature type in a group is annotator `s<k>` of that group.
    """
    out: list[dict[str, object]] = []
    for entry in entries:
        root = raw_root / entry["dir"]
        if not root.is_dir():
            raise MalformedFileError(f"{root}: student folder not found (ingest.student, dataset {entry['dataset']})")
        for year_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            types_path = year_dir / "data_types.csv"
            if not types_path.is_file():
                raise MalformedFileError(f"{types_path}: missing; it maps each group's columns to feature types")
            types = read_data_types(types_path)
            for path in sorted(year_dir.glob("group*.csv")):
                try:
                    group_number = int(path.stem.removeprefix("group"))
                except ValueError:
                    raise MalformedFileError(f"{path}: cannot read the group number from the file name") from None
                if group_number not in types:
                    raise MalformedFileError(f"{types_path}: no row for group {group_number} (needed by {path.name})")
                column_types = types[group_number]
                occurrence: dict[str, int] = {}
                annotators = []
                for feature in column_types:
                    occurrence[feature] = occurrence.get(feature, 0) + 1
                    annotators.append(f"s{occurrence[feature]}")
                group = f"student/{year_dir.name}/group{group_number:02d}"
                header, records = read_records(path, delimiter=";")
                n_in = n_kept = 0
                for number, record in enumerate(records, start=1):
                    image_id = record[0]
                    cells = [(k, raw) for k, raw in enumerate(record[1:], start=1) if raw != ""]
                    n_in += len(cells)
                    dataset = lookup(image_id, entry["dataset"], str(path)) if image_id else None
                    for k, raw in cells:
                        column = f"{k + 1}:{header[k] if k < len(header) else ''}"
                        feature = column_types[k - 1] if k - 1 < len(column_types) else ""
                        if dataset is None:
                            quarantine.add("annotations", path, number, column, raw,
                                           "lesion unknown to the image table" if image_id else "empty ID",
                                           image_id or None)
                        elif not feature:
                            quarantine.add("annotations", path, number, column, raw,
                                           f"no feature type for column position {k} in {types_path.name}", image_id)
                        else:
                            n_kept += _emit(out, seen, quarantine, path=path, number=number, column=column, raw=raw,
                                            image_id=image_id, dataset=dataset, source="student", feature=feature,
                                            group=group, annotator=annotators[k - 1])
                counts.add(path, "annotations", "values", n_in, n_kept, n_in - n_kept)
    return pd.DataFrame(out)

"""A study of one's own: a diagnosis table with configurable columns, images found in a folder tree,
and annotations in one tidy long table, onto the same canonical tables as the ISIC/ENHANCE readers.

Units of accounting: a diagnosis record, and an annotation record (one value per row of the long
table). Each rejected record is quarantined with its file, row, column and reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from crowdskin import tables
from crowdskin.ingest.common import (
    Counts,
    MalformedFileError,
    Quarantine,
    parse_number,
    read_records,
    require_columns,
)

GENERIC_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# A mask is found under the image id itself or with one of these suffixes (ISIC's, and the common one).
MASK_STEM_SUFFIXES = ("_segmentation", "_mask")
DIAGNOSIS_COLUMNS = {"image_id": "image_id", "label": "label", "group_id": None, "image_path": None}
ANNOTATION_COLUMNS = {"image_id": "image_id", "annotator": "annotator", "source": "source",
                      "feature": "feature", "value": "value", "group": None}


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and records of a CSV or Parquet file, every field as a stripped string ('' for missing).

    Parquet values are written as text the CSV reader would have read: an integral float as an
    integer ("1", not "1.0"), so that a label matches `positive: ["1"]` from either format.
    """
    if path.suffix.lower() != ".parquet":
        return read_records(path)
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise MalformedFileError(f"{path}: not a readable Parquet file ({error})") from None

    def text(value: object) -> str:
        if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()

    return [str(c).strip() for c in frame.columns], [[text(v) for v in row] for row in frame.itertuples(index=False)]


def index_tree(folder: Path, suffixes: tuple[str, ...]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """stem -> path for every file under `folder` (nested, suffix case-insensitive), and the stems
    found more than once -> their paths (an ambiguous image is refused, not picked by walk order)."""
    found: dict[str, list[str]] = {}
    if folder.is_dir():
        for parent, directories, names in os.walk(folder):
            directories.sort()
            for name in sorted(names):
                stem, suffix = os.path.splitext(name)
                if suffix.lower() in suffixes:
                    found.setdefault(stem, []).append(os.path.join(parent, name))
    return ({stem: paths[0] for stem, paths in found.items()},
            {stem: paths for stem, paths in found.items() if len(paths) > 1})


def _label_text(raw: str) -> str:
    """A label compared as text; '1.0' and '1' are the same value."""
    try:
        number = float(raw)
    except ValueError:
        return raw
    return str(int(number)) if number.is_integer() else raw


def _as_texts(values: Iterable[object]) -> set[str]:
    return {_label_text(str(v).strip()) for v in values}


def ingest_generic_diagnosis(
    entry: Mapping[str, Any], root: Path, quarantine: Quarantine, counts: Counts, seen: dict[str, str]
) -> list[dict[str, object]]:
    """images rows of one `format: generic` diagnosis table (see ingest.schema.yaml)."""
    path = root / entry["csv"]
    if not path.is_file():
        raise MalformedFileError(f"{path}: diagnosis table not found (ingest.diagnosis, dataset {entry['dataset']})")
    columns = {**DIAGNOSIS_COLUMNS, **entry.get("columns", {})}
    header, records = read_table(path)
    require_columns(path, header, [c for c in columns.values() if c])
    at = {key: header.index(name) for key, name in columns.items() if name}
    positive, negative = _as_texts(entry["positive"]), _as_texts(entry.get("negative", []))
    images, duplicated_images = {}, {}
    for folder in entry.get("images", []):
        index, duplicated = index_tree(root / folder, GENERIC_IMAGE_SUFFIXES)
        for stem, file in index.items():
            images.setdefault(stem, file)
        for stem, files in duplicated.items():
            duplicated_images.setdefault(stem, files)
    masks, _ = index_tree(root / entry["masks"], GENERIC_IMAGE_SUFFIXES) if entry.get("masks") else ({}, {})
    rows: list[dict[str, object]] = []
    for number, record in enumerate(records, start=1):
        fields = {key: record[i] if i < len(record) else "" for key, i in at.items()}
        image_id = fields["image_id"]

        def reject(column: str, raw: str, reason: str, *, number: int = number, image_id: str = image_id) -> None:
            quarantine.add("images", path, number, column, raw, reason, image_id or None)

        if not image_id:
            reject(columns["image_id"], "", "empty image id")
            continue
        if image_id in seen:
            reject(columns["image_id"], image_id, f"duplicate lesion: already registered by {seen[image_id]}")
            continue
        label = _label_text(fields["label"])
        if not label:
            reject(columns["label"], "", "empty label")
            continue
        if label not in positive and negative and label not in negative:
            reject(columns["label"], fields["label"],
                   f"label is neither positive {sorted(positive)} nor negative {sorted(negative)}")
            continue
        image = None
        if "image_path" in fields and fields["image_path"]:
            candidate = path.parent / fields["image_path"]
            if not candidate.is_file():
                reject(columns["image_path"], fields["image_path"], f"no such image file: {candidate}")
                continue
            image = str(candidate)
        elif image_id in duplicated_images:
            reject(columns["image_id"], image_id,
                   f"ambiguous image: several files are named {image_id}: {duplicated_images[image_id]}")
            continue
        else:
            image = images.get(image_id)
        mask = next((masks[stem] for stem in (image_id, *(image_id + s for s in MASK_STEM_SUFFIXES))
                     if stem in masks), None)
        seen[image_id] = str(path)
        group = fields.get("group_id", "")
        rows.append({
            "image_id": image_id, "dataset": entry["dataset"], "image_path": image, "mask_path": mask,
            "melanoma": None, "seborrheic_keratosis": None, "diagnosis": fields["label"],
            "abnormal": int(label in positive), "group_id": group or None, "origin_file": str(path),
            "origin_row": number,
            "origin_column": columns["image_path"] if fields.get("image_path") else columns["image_id"],
        })
    counts.add(path, "images", "records", len(records), len(rows), len(records) - len(rows))
    return rows


def _feature_value(raw: str, declared: Mapping[str, Any]) -> tuple[float | None, str]:
    """The value of one annotation under its feature's declaration, or (None, reason)."""
    levels = declared.get("levels")
    if levels is not None:
        texts = [str(level) for level in levels]
        if raw in texts:
            return float(texts.index(raw)), ""
        return None, f"not one of the feature's levels {texts}"
    try:
        value = parse_number(raw)
    except ValueError:
        return None, "annotation is not a number"
    low, high = declared.get("min"), declared.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        return None, f"outside the feature's declared range [{low}, {high}]"
    return value, ""


def ingest_annotation_tables(
    entries: list[Mapping[str, Any]], root: Path, lookup, quarantine: Quarantine, counts: Counts,  # type: ignore[no-untyped-def]
    seen: dict[tuple, str],
) -> pd.DataFrame:
    """annotations rows of each long annotation table (`ingest.annotations`, see ingest.schema.yaml).

    `lookup(image_id, dataset, origin)` is the lesion's dataset, or None when no diagnosis table
    registered it; `seen` holds every (image, source, feature, annotator group, annotator) already
    read, by any reader, so that a repeated annotation is quarantined whichever file repeats it.
    """
    out: list[dict[str, object]] = []
    for entry in entries:
        path = root / entry["file"]
        if not path.is_file():
            raise MalformedFileError(
                f"{path}: annotation table not found (ingest.annotations, dataset {entry['dataset']})")
        columns = {**ANNOTATION_COLUMNS, **entry.get("columns", {})}
        header, records = read_table(path)
        require_columns(path, header, [c for c in columns.values() if c])
        at = {key: header.index(name) for key, name in columns.items() if name}
        features: Mapping[str, Mapping[str, Any]] = entry["features"]
        n_kept = 0
        for number, record in enumerate(records, start=1):
            fields = {key: record[i] if i < len(record) else "" for key, i in at.items()}
            image_id = fields["image_id"]

            def reject(key: str, reason: str, *, number: int = number, fields: dict = fields, path: Path = path,
                       columns: dict = columns) -> None:
                quarantine.add("annotations", path, number, columns[key], fields[key], reason,
                               fields["image_id"] or None)

            empty = next((key for key in ("image_id", "annotator", "source", "feature", "value") if not fields[key]),
                         None)
            if empty:
                reject(empty, f"empty {columns[empty]}")
                continue
            source, feature = fields["source"], fields["feature"]
            if source not in tables.SOURCES:
                reject("source", f"unknown source; one of {list(tables.SOURCES)}")
                continue
            if feature not in features:
                reject("feature", f"feature not declared in ingest.annotations (declared: {sorted(features)})")
                continue
            value, reason = _feature_value(fields["value"], features[feature])
            if value is None:
                reject("value", reason)
                continue
            dataset = lookup(image_id, entry["dataset"], str(path))
            if dataset is None:
                reject("image_id", "lesion unknown to the image table")
                continue
            group = f"{source}/{fields.get('group') or entry['dataset']}"
            key = (image_id, source, feature, group, fields["annotator"])
            if key in seen:
                reject("value", f"duplicate annotation of {image_id} by {group}/{fields['annotator']} ({feature}); "
                                f"first at {seen[key]}")
                continue
            seen[key] = f"{path.name} record {number}"
            out.append({"image_id": image_id, "dataset": dataset, "source": source, "feature": feature,
                        "annotator_group": group, "annotator": fields["annotator"], "value": value,
                        "origin_file": str(path), "origin_row": number, "origin_column": columns["value"]})
            n_kept += 1
        counts.add(path, "annotations", "records", len(records), n_kept, len(records) - n_kept)
    return pd.DataFrame(out)

"""Ingestion of the real (and synthetic, same-format) raw files into the canonical tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from crowdskin import tables
from crowdskin.ingest.annotations import ingest_crowd, ingest_student
from crowdskin.ingest.common import Counts, MalformedFileError, Quarantine, read_records, require_columns
from crowdskin.ingest.generic import ingest_annotation_tables
from crowdskin.ingest.image_files import refuse_undecodable_images
from crowdskin.ingest.images import ingest_diagnosis, ph2_expert_annotations
from crowdskin.ingest.mturk import ingest_mturk

__all__ = ["IngestResult", "MalformedFileError", "ingest_all"]


@dataclass
class IngestResult:
    images: pd.DataFrame
    annotations: pd.DataFrame
    mturk_assignments: pd.DataFrame
    quarantine: pd.DataFrame
    counts: pd.DataFrame


def _url_list_images(names: list[str], raw_root: Path, quarantine: Quarantine, counts: Counts) -> pd.DataFrame:
    rows = []
    for name in names:
        path = raw_root / "url_lists" / name / "labels.csv"
        header, records = read_records(path)
        require_columns(path, header, ["image_id", "label", "file", "status", "reason"])
        at = {h: i for i, h in enumerate(header)}
        kept = 0
        for number, record in enumerate(records, start=1):
            fields = {c: record[i] if i < len(record) else "" for c, i in at.items()}
            if fields["status"] != "ok":
                quarantine.add("images", path, number, "url", fields.get("url"),
                               f"not fetched ({fields['status']}): {fields['reason']}", fields["image_id"])
                continue
            label = fields["label"].strip()
            abnormal = int(float(label)) if label in ("0", "1", "0.0", "1.0") else None
            rows.append({"image_id": fields["image_id"], "dataset": f"url:{name}",
                         "image_path": str(raw_root / fields["file"]), "mask_path": None, "melanoma": None,
                         "seborrheic_keratosis": None, "diagnosis": label or None, "abnormal": abnormal,
                         "group_id": None, "origin_file": str(path), "origin_row": number,
                         "origin_column": "file"})
            kept += 1
        counts.add(path, "images", "records", len(records), kept, len(records) - kept)
    return pd.DataFrame(rows)


def ingest_all(ingest_config: dict[str, Any], raw_root: str | Path, url_lists: list[str] = ()) -> IngestResult:
    """Read everything `ingest_config` names into validated tables: its paths are relative to its
    `root` when set (a study's own folder), else to `raw_root`, which also holds the URL lists."""
    raw_root = Path(raw_root)
    root = Path(ingest_config["root"]) if ingest_config.get("root") else raw_root
    quarantine, counts = Quarantine(), Counts()
    parts = [ingest_diagnosis(ingest_config.get("diagnosis", []), root, quarantine, counts),
             _url_list_images(list(url_lists), raw_root, quarantine, counts)]
    non_empty = [p for p in parts if len(p)]
    images = pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame()
    images, undecodable = refuse_undecodable_images(images, quarantine, counts)
    known: dict[str, str] = dict(zip(images.get("image_id", []), images.get("dataset", []), strict=True))
    registered: list[dict[str, object]] = []
    register_datasets = {e["dataset"] for e in ingest_config.get("crowd", []) if e.get("register_unknown")}
    register_datasets |= {e["dataset"] for e in ingest_config.get("annotations", []) if e.get("register_unknown")}

    def lookup(image_id: str, dataset: str, origin: str) -> str | None:
        if image_id in known:
            return known[image_id]
        if image_id in undecodable:  # refused, not registered again as a lesion without an image
            return None
        if dataset in register_datasets:
            known[image_id] = dataset
            registered.append({"image_id": image_id, "dataset": dataset, "origin_file": origin})
            return dataset
        return None

    seen: dict[tuple, str] = {}
    crowd = ingest_crowd(ingest_config.get("crowd", []), root, lookup, quarantine, counts, seen)
    student = ingest_student(ingest_config.get("student", []), root, lookup, quarantine, counts, seen)
    generic = ingest_annotation_tables(ingest_config.get("annotations", []), root, lookup, quarantine, counts, seen)
    if registered:
        images = pd.concat([images, pd.DataFrame(registered)], ignore_index=True)
    expert = [ph2_expert_annotations(root / e["csv"], set(known))
              for e in ingest_config.get("diagnosis", []) if e.get("format") == "ph2"]
    parts = [f for f in (crowd, student, generic, *expert) if len(f)]
    annotations = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    mturk = ingest_mturk(ingest_config.get("mturk", []), root, quarantine, counts)

    def as_table(frame: pd.DataFrame, schema) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        return tables.conform(frame, schema) if len(frame) else tables.empty(schema)

    return IngestResult(
        images=as_table(images, tables.IMAGES),
        annotations=as_table(annotations, tables.ANNOTATIONS),
        mturk_assignments=as_table(mturk, tables.MTURK_ASSIGNMENTS),
        quarantine=quarantine.frame(),
        counts=counts.frame(),
    )

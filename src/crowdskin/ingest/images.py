"""Registering lesions: diagnosis tables plus the masks and images found beside them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from crowdskin.ingest.common import Counts, MalformedFileError, Quarantine, read_records, read_text, require_columns
from crowdskin.ingest.generic import ingest_generic_diagnosis

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".gif", ".tif")


def _index_folder(folder: Path) -> dict[str, str]:
    """stem -> file name, read once per folder (a listdir beats a stat per lesion on 30k files)."""
    if not folder.is_dir():
        return {}
    index: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in IMAGE_SUFFIXES + MASK_SUFFIXES:
            index.setdefault(stem, name)
    return index


def _binary(raw: str) -> float:
    value = float(raw)
    if value not in (0.0, 1.0):
        raise ValueError(f"expected 0 or 1, got {raw!r}")
    return value


def _diagnosis_rows(path: Path, fmt: str) -> Iterable[tuple[int, str, dict[str, object] | tuple[str, str, str]]]:
    """(record number, image_id, parsed fields) or (…, (column, raw, reason)) for a bad record."""
    if fmt == "ph2":
        yield from _ph2_rows(path)
        return
    header, records = read_records(path)
    if fmt == "isic2017":
        require_columns(path, header, ["image_id", "melanoma", "seborrheic_keratosis"])
        idx = {c: header.index(c) for c in ("image_id", "melanoma", "seborrheic_keratosis")}
    else:  # isic2020
        require_columns(path, header, ["image_name", "target"])
        idx = {c: header.index(c) for c in header}
    for number, record in enumerate(records, start=1):
        record = record + [""] * (len(header) - len(record))
        if fmt == "isic2017":
            image_id = record[idx["image_id"]]
            try:
                mel = _binary(record[idx["melanoma"]])
            except ValueError:
                yield number, image_id, ("melanoma", record[idx["melanoma"]], "melanoma is not 0 or 1")
                continue
            try:
                sk = _binary(record[idx["seborrheic_keratosis"]])
            except ValueError:
                yield number, image_id, ("seborrheic_keratosis", record[idx["seborrheic_keratosis"]],
                                         "seborrheic_keratosis is not 0 or 1")
                continue
            yield number, image_id, {"melanoma": mel, "seborrheic_keratosis": sk, "diagnosis": None, "group_id": None}
        else:
            image_id = record[idx["image_name"]]
            try:
                mel = _binary(record[idx["target"]])
            except ValueError:
                yield number, image_id, ("target", record[idx["target"]], "target is not 0 or 1")
                continue
            diagnosis = record[idx["diagnosis"]] if "diagnosis" in idx else ""
            if "seborrheic_keratosis" in idx and record[idx["seborrheic_keratosis"]] != "":
                try:
                    sk = _binary(record[idx["seborrheic_keratosis"]])
                except ValueError:
                    yield number, image_id, ("seborrheic_keratosis", record[idx["seborrheic_keratosis"]],
                                             "seborrheic_keratosis is not 0 or 1")
                    continue
            else:
                sk = float(diagnosis.strip().lower() == "seborrheic keratosis")
            patient = record[idx["patient_id"]] if "patient_id" in idx else ""
            yield number, image_id, {"melanoma": mel, "seborrheic_keratosis": sk,
                                     "diagnosis": diagnosis or None, "group_id": patient or None}


PH2_COLORS = ("White", "Red", "Light-Brown", "Dark-Brown", "Blue-Gray", "Black")


def _ph2_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """PH2_dataset.txt is a `||`-delimited text table: (header, [(record number, fields)])."""
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    for line in read_text(path).splitlines():
        if not line.startswith("||"):
            continue
        fields = [f.strip() for f in line.strip().strip("|").split("||")]
        if not header and "Name" in fields:
            header = fields
        elif header and fields and fields[0].startswith("IMD"):
            rows.append((len(rows) + 1, fields + [""] * (len(header) - len(fields))))
    if not header:
        raise MalformedFileError(f"{path}: no '|| Name || ...' header line; is this PH2_dataset.txt?")
    require_columns(path, header, ["Name", "Clinical Diagnosis"])
    return header, rows


def _ph2_rows(path: Path) -> Iterable[tuple[int, str, dict[str, object] | tuple[str, str, str]]]:
    """Clinical Diagnosis 0 = common nevus, 1 = atypical nevus, 2 = melanoma."""
    header, rows = _ph2_table(path)
    at = header.index("Clinical Diagnosis")
    for number, fields in rows:
        if fields[at] not in ("0", "1", "2"):
            yield number, fields[0], ("Clinical Diagnosis", fields[at], "clinical diagnosis is not 0, 1 or 2")
            continue
        clinical = int(fields[at])
        yield number, fields[0], {
            "melanoma": float(clinical == 2), "seborrheic_keratosis": 0.0,
            "diagnosis": ("common nevus", "atypical nevus", "melanoma")[clinical], "group_id": None,
        }


def ph2_expert_annotations(path: Path, known: set[str]) -> pd.DataFrame:
    """The dermatologists' asymmetry (0/1/2) and color count (X marks over six colors) of PH2."""
    header, rows = _ph2_table(path)
    out = []
    color_at = [header.index(c) for c in PH2_COLORS if c in header]
    for number, fields in rows:
        if fields[0] not in known:
            continue
        if "Asymmetry" in header and fields[header.index("Asymmetry")] in ("0", "1", "2"):
            out.append((fields[0], "asymmetry", float(fields[header.index("Asymmetry")]), number, "Asymmetry"))
        if len(color_at) == len(PH2_COLORS):
            out.append((fields[0], "color", float(sum(fields[i].upper() == "X" for i in color_at)), number, "Colors"))
    return pd.DataFrame(
        [{"image_id": i, "dataset": "ph2", "source": "expert", "feature": f, "annotator_group": "expert/ph2",
          "annotator": "dermatologist", "value": v, "origin_file": str(path), "origin_row": n, "origin_column": c}
         for i, f, v, n, c in out])


def ingest_diagnosis(
    entries: list[dict], raw_root: Path, quarantine: Quarantine, counts: Counts
) -> pd.DataFrame:
    """One images row per valid, first-seen lesion of each configured diagnosis table."""
    rows: list[dict[str, object]] = []
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.get("format") == "generic":
            rows += ingest_generic_diagnosis(entry, raw_root, quarantine, counts, seen)
            continue
        path = raw_root / entry["csv"]
        if not path.is_file():
            raise MalformedFileError(
                f"{path}: diagnosis table not found (ingest.diagnosis, dataset {entry['dataset']})")
        mask_dir = raw_root / entry["masks"] if entry.get("masks") else None
        masks = _index_folder(mask_dir) if mask_dir else {}
        image_dirs = [(raw_root / d, _index_folder(raw_root / d)) for d in entry.get("images", [])]
        n_in = n_kept = 0
        fmt = entry.get("format", "isic2017")
        for number, image_id, parsed in _diagnosis_rows(path, fmt):
            n_in += 1
            if isinstance(parsed, tuple):
                column, raw, reason = parsed
                quarantine.add("images", path, number, column, raw, reason, image_id)
                continue
            if not image_id:
                quarantine.add("images", path, number, "image_id", "", "empty image id")
                continue
            if image_id in seen:
                quarantine.add("images", path, number, "image_id", image_id,
                               f"duplicate lesion: already registered by {seen[image_id]}", image_id)
                continue
            seen[image_id] = str(path)
            mask = masks.get(f"{image_id}_segmentation") if mask_dir else None
            image = next((str(folder / index[image_id]) for folder, index in image_dirs if image_id in index), None)
            mel, sk = parsed["melanoma"], parsed["seborrheic_keratosis"]
            rows.append({
                "image_id": image_id, "dataset": entry["dataset"], "image_path": image,
                "mask_path": str(mask_dir / mask) if mask else None,
                "melanoma": mel, "seborrheic_keratosis": sk, "diagnosis": parsed["diagnosis"],
                "abnormal": int(bool(mel) or bool(sk)), "group_id": parsed["group_id"], "origin_file": str(path),
                # where the image came from, for its quarantine row should it not decode
                "origin_row": number, "origin_column": "image_name" if fmt == "isic2020" else "image_id",
            })
            n_kept += 1
        counts.add(path, "images", "records", n_in, n_kept, n_in - n_kept)
    return pd.DataFrame(rows)

"""A small study that is not ENHANCE, written in the generic input formats (`format: generic`
diagnosis table, long annotation table, a nested image folder): what a group with its own images
and raters gives crowdskin. config/example-study.yaml reads it; `crowdskin example-study DIR`
writes it.

The lesions, images and scores are the synthetic default's (crowdskin.synthetic, same seed), so the
study's known truth is the synthetic data in ENHANCE's formats: ingesting either must give the same
lesions, labels and annotations, up to the names below. What differs is everything a stranger's
study would change: a patient column and a text label (`finding`: malignant / benign), photographs
in one folder per patient with upper- and lower-case suffixes and no masks, the raters' own column
names, and features of other names, one of them ordinal with text levels.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from crowdskin import synthetic
from crowdskin.config import section
from crowdskin.ingest import IngestResult, ingest_all

# The synthetic ABC features under the study's names.
FEATURE_NAMES = {"asymmetry": "shape_irregularity", "border": "lobes", "color": "colour_count"}
# shape_irregularity is ordinal: the synthetic asymmetry class 0, 1, 2 written as these levels.
SHAPE_LEVELS = ("symmetric", "one_axis", "irregular")
FINDINGS = {1: "malignant", 0: "benign"}


def study_id(synthetic_id: str) -> str:
    """The study's lesion id of a synthetic lesion (SYN_0042 -> L0042)."""
    return f"L{synthetic_id.removeprefix('SYN_')}"

# The ENHANCE-format files the study is converted from (the synthetic layout under <root>/).
_ENHANCE_INGEST = {
    "diagnosis": [{"dataset": "example", "csv": "ground_truth.csv", "images": ["images"]}],
    "crowd": [{"dataset": "example", "dir": "enhance/crowd",
               "files": {"asymmetry": "asymmetry.csv", "border": "border.csv", "color": "color.csv"}}],
    "student": [{"dataset": "example", "dir": "enhance/student"}],
}


def enhance_version(root: str | Path, *, n_images: int, image_size: int, seed: int) -> IngestResult:
    """Write the synthetic data in ENHANCE's formats under `root`; returns what its readers ingest
    (the study's known truth: its images and annotations tables)."""
    settings = synthetic.SyntheticSettings.from_config(
        section("synthetic", {"n_images": n_images, "image_size": image_size, "mturk": {"n_hits": 10}}), seed)
    synthetic.generate(root, settings)
    return ingest_all(section("ingest", _ENHANCE_INGEST), root)


def write_example_study(root: str | Path, *, n_images: int = 200, image_size: int = 64, seed: int = 42) -> list[str]:
    """Write the example study under `root`; returns the files written, relative to it."""
    root = Path(root)
    with tempfile.TemporaryDirectory() as scratch:
        truth = enhance_version(scratch, n_images=n_images, image_size=image_size, seed=seed)
        images, annotations = truth.images, truth.annotations
        rng = np.random.default_rng([seed, 0xE5A])
        # One to three lesions per patient, in the order of the lesions.
        patients: list[str] = []
        while len(patients) < len(images):
            patients += [f"P{len(set(patients)) + 1:04d}"] * int(rng.integers(1, 4))
        images = images.assign(patient=patients[:len(images)])
        written = []
        for number, row in enumerate(images.itertuples(), start=1):
            relative = f"photos/{row.patient}/{study_id(row.image_id)}.{'PNG' if number % 3 == 0 else 'png'}"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(row.image_path, root / relative)
            written.append(relative)
    lesions = pd.DataFrame({"lesion": images["image_id"].map(study_id), "patient": images["patient"],
                            "finding": images["abnormal"].astype(int).map(FINDINGS)})
    lesions.to_csv(root / "lesions.csv", index=False)
    long = pd.DataFrame({
        "lesion": annotations["image_id"].map(study_id),
        "rater": annotations["annotator"],
        "rater_kind": annotations["source"],
        # ENHANCE's groups are <source>/<dataset> (crowd) or <source>/<year>/<group> (students):
        # the study's cohort column is the part after the source, empty where it is the dataset.
        "cohort": [group.split("/", 1)[1] if group.count("/") > 1 else ""
                   for group in annotations["annotator_group"]],
        "item": annotations["feature"].map(FEATURE_NAMES),
        "score": [SHAPE_LEVELS[int(v)] if f == "asymmetry" else f"{v:g}"
                  for f, v in zip(annotations["feature"], annotations["value"], strict=True)],
    })
    long.to_csv(root / "annotations.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    return ["lesions.csv", "annotations.csv", *written]

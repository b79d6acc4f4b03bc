"""Every table's contract (docs/data-model.md) as a pandera schema, and their Parquet I/O: the
canonical tables of ingestion, the automated stage's scores, and the crowd stage's outputs.

Every stage writes through `write_table`, which validates against the schema, so a stage can rely
on the columns and types of what it reads.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

SOURCES = ("student", "crowd", "automated", "expert")
CONFIDENCE_LEVELS = ("very uncertain", "uncertain", "neutral", "confident", "very confident")

_binary = pa.Check.isin([0, 1])

IMAGES = pa.DataFrameSchema(
    {
        "image_id": pa.Column(str, unique=True),
        "dataset": pa.Column(str),
        "image_path": pa.Column(str, nullable=True),
        "mask_path": pa.Column(str, nullable=True),
        "melanoma": pa.Column(float, _binary, nullable=True),
        "seborrheic_keratosis": pa.Column(float, _binary, nullable=True),
        "diagnosis": pa.Column(str, nullable=True),
        "abnormal": pa.Column("Int8", _binary, nullable=True),
        "group_id": pa.Column(str, nullable=True),
        "origin_file": pa.Column(str),
    },
    strict=True,
    coerce=True,
    name="images",
)

ANNOTATIONS = pa.DataFrameSchema(
    {
        "image_id": pa.Column(str),
        "dataset": pa.Column(str),
        "source": pa.Column(str, pa.Check.isin(SOURCES)),
        "feature": pa.Column(str, pa.Check.str_matches(r"^[a-z][a-z0-9_]*$")),
        "annotator_group": pa.Column(str),
        "annotator": pa.Column(str),
        "value": pa.Column(float, pa.Check(lambda s: ~s.isin([float("inf"), float("-inf")]))),
        "origin_file": pa.Column(str),
        "origin_row": pa.Column("Int64", nullable=True),
        "origin_column": pa.Column(str, nullable=True),
    },
    strict=True,
    coerce=True,
    unique=["image_id", "source", "feature", "annotator_group", "annotator"],
    name="annotations",
)

MTURK_ASSIGNMENTS = pa.DataFrameSchema(
    {
        "batch": pa.Column(str),
        "hit_id": pa.Column(str),
        "assignment_id": pa.Column(str, unique=True),
        "worker_id": pa.Column(str),
        "anchor_id": pa.Column(str),
        "anchor_label": pa.Column("Int8", _binary, nullable=True),
        "candidate_a_id": pa.Column(str),
        "candidate_a_label": pa.Column("Int8", _binary, nullable=True),
        "candidate_b_id": pa.Column(str),
        "candidate_b_label": pa.Column("Int8", _binary, nullable=True),
        "choice": pa.Column(str, pa.Check.isin(["A", "B"])),
        "confidence": pa.Column(str, pa.Check.isin(CONFIDENCE_LEVELS), nullable=True),
        "work_time_s": pa.Column(float, pa.Check.ge(0)),
        "accept_time": pa.Column("datetime64[ns, UTC]"),
        "submit_time": pa.Column("datetime64[ns, UTC]"),
        "approval_rate": pa.Column(float, pa.Check.in_range(0, 1)),
        "approval_approved": pa.Column("Int64", pa.Check.ge(0)),
        "approval_total": pa.Column("Int64", pa.Check.ge(0)),
        "origin_file": pa.Column(str),
        "origin_row": pa.Column("Int64"),
    },
    strict=True,
    coerce=True,
    name="mturk_assignments",
)

QUARANTINE = pa.DataFrameSchema(
    {
        "stage": pa.Column(str),
        "table": pa.Column(str),
        "origin_file": pa.Column(str),
        "row": pa.Column("Int64", nullable=True),
        "column": pa.Column(str, nullable=True),
        "raw_value": pa.Column(str, nullable=True),
        "reason": pa.Column(str),
        "record_id": pa.Column(str, nullable=True),
    },
    strict=True,
    coerce=True,
    name="quarantine",
)

AUTOMATED_STATUSES = ("ok", "warning", "partial", "failed")
# The six reference colors of the color score, in the order of the automated table's columns.
AUTOMATED_COLORS = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")

AUTOMATED = pa.DataFrameSchema(
    {
        "image_id": pa.Column(str, unique=True),
        "dataset": pa.Column(str),
        "asymmetry_raw": pa.Column(float, pa.Check.in_range(0, 1), nullable=True),
        "asymmetry_class": pa.Column("Int8", pa.Check.isin([0, 1, 2]), nullable=True),
        "border_score": pa.Column("Int32", pa.Check.ge(0), nullable=True),
        "color_score": pa.Column("Int8", pa.Check.in_range(0, 6), nullable=True),
        **{f"color_{name}": pa.Column("boolean", nullable=True) for name in AUTOMATED_COLORS},
        "component_count": pa.Column("Int32", nullable=True),
        "status": pa.Column(str, pa.Check.isin(AUTOMATED_STATUSES)),
        "reason": pa.Column(str, nullable=True),
    },
    strict=True,
    coerce=True,
    checks=[
        # a score is missing only with a reason
        pa.Check(
            lambda df: ~(df[["asymmetry_class", "border_score", "color_score"]].isna().any(axis=1)
                         & df["reason"].isna()),
            error="a missing score needs a reason",
        ),
    ],
    name="automated",
)

TARGETS = pa.DataFrameSchema(
    {
        "image_id": pa.Column(str),
        "dataset": pa.Column(str),
        "source": pa.Column(str),
        "feature": pa.Column(str),
        "target": pa.Column(float, nullable=True),
        "available": pa.Column(bool),
        "n_annotators": pa.Column("int64", pa.Check.ge(0)),
        "n_groups": pa.Column("int64", pa.Check.ge(0)),
        "std": pa.Column(float, pa.Check.ge(0), nullable=True),
        "skewness": pa.Column(float, nullable=True),
        "kurtosis": pa.Column(float, nullable=True),
    },
    strict=True,
    coerce=True,
    unique=["image_id", "dataset", "source", "feature"],
    checks=[pa.Check(lambda df: (df["available"] == df["target"].notna()).all(),
                     error="a target exists exactly where available is true")],
    name="crowd_targets",
)

CROWD_LABELS = pa.DataFrameSchema(
    {
        "image_id": pa.Column(str, unique=True),
        "n_votes": pa.Column("int64", pa.Check.ge(1)),
        "votes_abnormal": pa.Column("int64", pa.Check.ge(0)),
        "agreement": pa.Column(float, pa.Check.in_range(0.5, 1.0)),
        "label_majority": pa.Column("Int8", pa.Check.isin([0, 1]), nullable=True),
        "label_reliability": pa.Column("Int8", pa.Check.isin([0, 1])),
        "p_abnormal": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "reliability_method": pa.Column(str),
        "true_label": pa.Column("Int8", pa.Check.isin([0, 1]), nullable=True),
    },
    strict=True,
    coerce=True,
    name="crowd_labels",
)


def kept_assignments_schema(rules: list[str] | tuple[str, ...]) -> pa.DataFrameSchema:
    """mturk_kept.parquet: the usable-assignment columns, whether the answer is correct, and one
    flag per configured rule (all False for a kept row)."""
    extra = {"correct": pa.Column("boolean", nullable=True)}
    extra |= {f"flag_{rule}": pa.Column(bool, pa.Check.isin([False])) for rule in rules}
    return MTURK_ASSIGNMENTS.add_columns(extra).set_name("crowd_mturk_kept")


def empty(schema: pa.DataFrameSchema) -> pd.DataFrame:
    """A zero-row frame with the schema's columns and dtypes."""
    frame = pd.DataFrame({name: pd.Series([], dtype=object) for name in schema.columns})
    return schema.validate(frame)


def conform(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    """Order the columns as the schema does, add missing nullable ones, coerce and validate."""
    frame = frame.copy()
    for name, column in schema.columns.items():
        if name not in frame.columns and column.nullable:
            frame[name] = None
    frame = frame[[c for c in schema.columns if c in frame.columns]]
    return schema.validate(frame.reset_index(drop=True), lazy=True)


def write_atomic(frame: pd.DataFrame, path: str | os.PathLike[str], *, format: str = "parquet") -> None:
    """Write to a temporary file beside `path` and rename, so readers never see a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if format == "parquet":
            frame.to_parquet(tmp, index=False)
        elif format == "csv":
            frame.to_csv(tmp, index=False)
        else:
            raise ValueError(f"unknown table format {format!r} (parquet or csv)")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet_atomic(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    write_atomic(frame, path, format="parquet")


def write_csv_atomic(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    write_atomic(frame, path, format="csv")


def write_table(frame: pd.DataFrame, schema: pa.DataFrameSchema, path: str | os.PathLike[str]) -> pd.DataFrame:
    """Validate against `schema` and write atomically; returns the conformed frame."""
    conformed = conform(frame, schema)
    write_parquet_atomic(conformed, path)
    return conformed


def read_table(path: str | os.PathLike[str], schema: pa.DataFrameSchema) -> pd.DataFrame:
    return schema.validate(pd.read_parquet(path))

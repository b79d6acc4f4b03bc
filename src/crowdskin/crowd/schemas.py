"""Pandera schemas of the crowd layer's Parquet outputs (docs/data-model.md, "Later stages")."""

from __future__ import annotations

import pandera.pandas as pa

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
    from crowdskin.tables import MTURK_ASSIGNMENTS

    extra = {"correct": pa.Column("boolean", nullable=True)}
    extra |= {f"flag_{rule}": pa.Column(bool, pa.Check.isin([False])) for rule in rules}
    return MTURK_ASSIGNMENTS.add_columns(extra).set_name("crowd_mturk_kept")

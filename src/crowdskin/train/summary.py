"""The training stage's tables over every job: `runs.csv` and test AUC per (task, backbone)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

RUN_COLUMNS = ["task", "backbone", "fold", "test_auc", "val_auc", "epochs", "split_hash", "train_seconds",
               "job_seconds", "mlflow_run_id", "mlflow_error"]


def runs_table(metrics: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per job's metrics.json; its warnings joined into one column."""
    rows = [{key: job.get(key) for key in RUN_COLUMNS} | {"warnings": "; ".join(job.get("warnings", []))}
            for job in metrics]
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, "warnings"])


def auc_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of the test AUC over the folds, per (task, backbone); `folds`
    counts the folds with an AUC (a test set of one class has none)."""
    return (runs.groupby(["task", "backbone"])["test_auc"]
            .agg(mean_test_auc="mean", std_test_auc="std", folds="count").reset_index())

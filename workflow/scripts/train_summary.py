"""Snakemake adapter: every job's metrics.json -> runs.csv, and mean/std test AUC per (task, backbone)."""
import json

import pandas as pd

from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)  # noqa: F821
rows = []
for path in snakemake.input:  # noqa: F821
    with open(path) as fh:
        metrics = json.load(fh)
    rows.append({key: metrics.get(key) for key in (
        "task", "backbone", "fold", "test_auc", "val_auc", "epochs", "split_hash", "train_seconds",
        "job_seconds", "mlflow_run_id", "mlflow_error")} | {"warnings": "; ".join(metrics.get("warnings", []))})
runs = pd.DataFrame(rows)
runs.to_csv(snakemake.output.runs, index=False)  # noqa: F821
summary = (runs.groupby(["task", "backbone"])["test_auc"]
           .agg(mean_test_auc="mean", std_test_auc="std", folds="count").reset_index())
summary.to_csv(snakemake.output.summary, index=False)  # noqa: F821
log.info("%d runs, %d without an MLflow run id", len(runs), int(runs["mlflow_run_id"].isna().sum()))

"""Snakemake adapter: every job's metrics.json -> runs.csv and summary.csv (crowdskin.train.summary)."""
import json
from pathlib import Path

from crowdskin.logs import to_rule_log
from crowdskin.train.summary import auc_summary, runs_table

log = to_rule_log(snakemake)
runs = runs_table(json.loads(Path(path).read_text()) for path in snakemake.input)
runs.to_csv(snakemake.output.runs, index=False)
auc_summary(runs).to_csv(snakemake.output.summary, index=False)
log.info("%d runs, %d without an MLflow run id", len(runs), int(runs["mlflow_run_id"].isna().sum()))

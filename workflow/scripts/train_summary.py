"""Snakemake adapter: every job's metrics.json -> runs.csv and summary.csv (crowdskin.train.summary),
after logging the MLflow runs that cluster jobs left pending (crowdskin.train.loop.log_pending_runs)."""
import json
from pathlib import Path

from crowdskin.logs import to_rule_log
from crowdskin.train.summary import auc_summary, runs_table

log = to_rule_log(snakemake)
jobs = {Path(path): json.loads(Path(path).read_text()) for path in [*snakemake.input.grid, *snakemake.input.checks]}
if any(job.get("mlflow_pending") for job in jobs.values()):
    from crowdskin.train.loop import log_pending_runs
    from crowdskin.train.tracking import tracking_uri

    experiment = json.loads(Path(snakemake.input.experiment).read_text())
    logged = log_pending_runs(tracking_uri(experiment.get("tracking_uri")), jobs)
    for path, (run_id, error) in logged.items():
        jobs[path].update(mlflow_run_id=run_id, mlflow_error=error)
    done = sum(run_id is not None for run_id, _ in logged.values())
    log.info("%d of the %d runs left by cluster jobs logged to MLflow here", done, len(logged))
runs = runs_table(jobs[Path(path)] for path in snakemake.input.grid)
runs.to_csv(snakemake.output.runs, index=False)
auc_summary(runs).to_csv(snakemake.output.summary, index=False)
log.info("%d runs, %d without an MLflow run id", len(runs), int(runs["mlflow_run_id"].isna().sum()))

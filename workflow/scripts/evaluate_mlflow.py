"""Snakemake adapter: MLflow parent runs over each model's folds, a run per ensemble and one over the
backbone checks (crowdskin.evaluate.tracking.log_comparisons), in the experiment the training jobs logged to."""
import json

import pandas as pd

from crowdskin.evaluate.tracking import log_comparisons
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic
from crowdskin.train.tracking import run_namespace

log = to_rule_log(snakemake)
with open(snakemake.input.experiment, encoding="utf-8") as handle:
    experiment = json.load(handle)
logged = log_comparisons(
    experiment["tracking_uri"], experiment["experiment"],
    auc_table=pd.read_csv(snakemake.input.auc_summary, keep_default_na=False, na_values=[""]),
    runs=pd.read_csv(snakemake.input.runs),
    members=snakemake.params.members,
    # an experiment file of an earlier version has no namespace: its runs are this directory's
    namespace=experiment.get("namespace") or run_namespace(),
    comparisons=pd.read_csv(snakemake.input.comparisons, keep_default_na=False, na_values=[""]),
)
write_csv_atomic(logged, snakemake.output[0])
log.info("%d parent, ensemble and checks runs in experiment %s", len(logged), experiment["experiment"])

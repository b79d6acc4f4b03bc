"""Snakemake adapter: create the MLflow store and experiment once, before parallel jobs log to it."""
import json

from crowdskin.logs import to_rule_log
from crowdskin.train.tracking import ensure_experiment, tracking_uri

log = to_rule_log(snakemake)  # noqa: F821
uri = tracking_uri(snakemake.params.tracking_uri)  # noqa: F821
name = snakemake.params.experiment  # noqa: F821
experiment_id = ensure_experiment(uri, name)
with open(snakemake.output[0], "w") as fh:  # noqa: F821
    json.dump({"tracking_uri": uri, "experiment": name, "experiment_id": experiment_id}, fh, indent=2)
log.info("MLflow experiment %r (id %s) at %s", name, experiment_id, uri)

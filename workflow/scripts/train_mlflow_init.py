"""Snakemake adapter: create the MLflow store and experiment once, before parallel jobs log to it."""
import json

from crowdskin.logs import to_rule_log
from crowdskin.train.tracking import ensure_experiment, run_namespace, tracking_uri

log = to_rule_log(snakemake)
uri = tracking_uri(snakemake.params.tracking_uri)
name = snakemake.params.experiment
namespace = run_namespace(snakemake.params.run_namespace)
experiment_id = ensure_experiment(uri, name)
with open(snakemake.output[0], "w") as fh:
    json.dump({"tracking_uri": uri, "experiment": name, "experiment_id": experiment_id, "namespace": namespace},
              fh, indent=2)
log.info("MLflow experiment %r (id %s) at %s; this working directory's runs are tagged crowdskin.namespace=%s",
         name, experiment_id, uri, namespace)

"""Precision and recall of the MTurk rules against simulated spammers: crowdskin.crowd.analysis."""
import pandas as pd

from crowdskin.crowd.analysis import spammer_detection
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic

log = to_rule_log(snakemake)
decisions = pd.read_parquet(snakemake.input.decisions)
workers = pd.read_csv(snakemake.input.workers, dtype={"worker_id": str})
result = spammer_detection(decisions, workers, snakemake.params.mturk_rules)
write_csv_atomic(result, snakemake.output.detection)
log.info("spammer detection:\n%s", result.to_string(index=False))

"""Precision and recall of the MTurk rules against simulated spammers: crowdskin.crowd.analysis."""
from pathlib import Path

import pandas as pd

from crowdskin.crowd.analysis import spammer_detection
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic
from crowdskin.crowd.settings import crowd_settings

log = to_rule_log(snakemake)  # noqa: F821
rules = crowd_settings(snakemake.config.get("crowd"))["mturk"]["rules"]  # noqa: F821
decisions = pd.read_parquet(snakemake.input.decisions)  # noqa: F821
workers_path = Path(snakemake.params.workers)  # noqa: F821
if not workers_path.is_file():
    raise FileNotFoundError(f"crowd.truth.workers: {workers_path} not found (is the synthetic generator enabled?)")
workers = pd.read_csv(workers_path, dtype={"worker_id": str})
result = spammer_detection(decisions, workers, rules)
write_csv_atomic(result, snakemake.output.detection)  # noqa: F821
log.info("spammer detection:\n%s", result.to_string(index=False))

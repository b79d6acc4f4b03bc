"""Snakemake adapter: one ensemble's averaged predictions on every backbone and fold
(crowdskin.evaluate.ensemble.average_predictions)."""
import pandas as pd

from crowdskin.evaluate.ensemble import average_predictions
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_parquet_atomic

log = to_rule_log(snakemake)
for output, members in snakemake.params.layout.items():
    tables = {path: pd.read_parquet(path) for path in members}
    averaged = average_predictions(tables, where=output)
    write_parquet_atomic(averaged, output)
    log.info("%s: %d members, %d test lesions", output, len(members), len(averaged))

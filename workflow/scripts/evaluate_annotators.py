"""Snakemake adapter: what the annotator models learned, over the folds (crowdskin.evaluate.annotators)."""
import pandas as pd

from crowdskin.evaluate.annotators import summarise_annotators
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic

log = to_rule_log(snakemake)
summary = summarise_annotators([pd.read_parquet(path) for path in snakemake.input.learned], snakemake.params.index)
write_csv_atomic(summary, snakemake.output.summary)
log.info("annotators:\n%s", summary.to_string(index=False))

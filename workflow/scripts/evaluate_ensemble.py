"""Snakemake adapter: one ensemble's averaged predictions on every backbone and fold
(crowdskin.evaluate.ensemble.average_predictions)."""
import pandas as pd

from crowdskin.evaluate.coverage import fold_test_lesions
from crowdskin.evaluate.ensemble import FoldTests, average_predictions
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_parquet_atomic
from crowdskin.train.splits import read_folds

log = to_rule_log(snakemake)
folds_path = snakemake.input.folds
folds, _, _ = read_folds(folds_path)
for output, layout in snakemake.params.layout.items():
    members = layout["members"]
    tables = {path: pd.read_parquet(path) for path in members}
    fold_tests = FoldTests(layout["fold"], fold_test_lesions(folds, layout["fold"]), folds_path)
    averaged = average_predictions(tables, where=output, fold_tests=fold_tests)
    write_parquet_atomic(averaged, output)
    log.info("%s: %d members, %d test lesions", output, len(members), len(averaged))

"""Snakemake adapter: every model's and ensemble's test predictions -> results/scores/
(crowdskin.evaluate.scores)."""
import json

import pandas as pd

from crowdskin.evaluate.coverage import check_test_predictions, fold_test_lesions
from crowdskin.evaluate.scores import Settings, format_table, head_rows, score
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic
from crowdskin.train.splits import read_folds

log = to_rule_log(snakemake)
params = snakemake.params
folds_path = snakemake.input.folds
folds, _, _ = read_folds(folds_path, scheme=params.scheme)
tested = {fold: fold_test_lesions(folds, fold) for fold in {entry["fold"] for entry in params.index}}
parts, heads = [], []
for path, entry in zip(snakemake.input.predictions, params.index, strict=True):
    frame = pd.read_parquet(path)
    check_test_predictions(frame, tested[entry["fold"]], source=path, fold=entry["fold"], folds_source=folds_path)
    heads.append(head_rows(frame).assign(**{k: entry[k] for k in ("model", "kind", "backbone")}))
    frame = frame.loc[frame["split"] == "test", ["image_id", "score", "label"]]
    parts.append(frame.assign(**entry))
test = pd.concat(parts, ignore_index=True)
bootstrap = params.bootstrap
settings = Settings(scheme=params.scheme, resamples=bootstrap["resamples"], confidence=bootstrap["confidence"],
                    seed=params.seed if bootstrap["seed"] is None else bootstrap["seed"],
                    extra_comparisons=tuple(tuple(pair) for pair in params.extra_comparisons))
scores = score(test, settings, backbones=params.backbones, heads=pd.concat(heads, ignore_index=True))
out = snakemake.output
write_csv_atomic(scores.auc_folds, out.auc_folds)
write_csv_atomic(scores.auc_summary, out.auc_summary)
write_csv_atomic(scores.auc_table, out.auc_table)
write_csv_atomic(scores.comparisons, out.comparisons)
write_csv_atomic(scores.roc, out.roc)
write_csv_atomic(scores.heads, out.heads)
with open(out.auc_table_md, "w", encoding="utf-8") as handle:
    handle.write(format_table(scores.auc_table, params.backbones).to_markdown(index=False) + "\n")
with open(out.metrics, "w", encoding="utf-8") as handle:
    json.dump(scores.metrics, handle, indent=2)
log.info("%d models x backbones, %d comparisons", len(scores.auc_summary), len(scores.comparisons))

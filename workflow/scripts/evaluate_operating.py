"""Snakemake adapter: every model's and ensemble's validation and test predictions -> calibration,
operating points, per-fold ROC curves and the heads' scatter (crowdskin.evaluate.operating)."""
import pandas as pd

from crowdskin.evaluate import operating, operating_figures
from crowdskin.evaluate.coverage import check_test_predictions, fold_test_lesions
from crowdskin.evaluate.scores import head_rows, head_summary
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
    identity = {k: entry[k] for k in ("model", "kind", "source", "backbone")}
    heads.append(head_rows(frame).assign(**identity))
    frame = frame.loc[frame["split"].isin(["val", "test"]), ["split", "image_id", "score", "label"]]
    parts.append(frame.assign(**entry))
predictions = pd.concat(parts, ignore_index=True)
predictions = pd.concat([predictions, operating.ensemble_validation(predictions, params.ensembles)],
                        ignore_index=True)
bootstrap = params.bootstrap
settings = operating.Settings(scheme=params.scheme, resamples=bootstrap["resamples"],
                              confidence=bootstrap["confidence"],
                              seed=params.seed if bootstrap["seed"] is None else bootstrap["seed"])

calibration = operating.calibration_table(predictions, settings.scheme)
brier = operating.brier_table(predictions, settings)
points = operating.operating_points(predictions, settings)
fold_roc = operating.fold_roc(predictions)
head_points = pd.concat(heads, ignore_index=True).reindex(columns=operating.HEAD_POINT_COLUMNS)
head_table = head_summary(head_points, settings.scheme)
auc = operating.model_auc(predictions, settings.scheme)

out = snakemake.output
write_csv_atomic(calibration, out.calibration)
write_csv_atomic(brier, out.brier)
write_csv_atomic(points, out.operating)
write_csv_atomic(fold_roc, out.fold_roc)
write_csv_atomic(head_points, out.head_points)
operating_figures.reliability_diagram(calibration, brier, out.calibration_figure)
operating_figures.operating_point_chart(points, out.operating_figure)
operating_figures.fold_roc_curves(fold_roc, points, out.fold_roc_figure)
operating_figures.heads_scatter(head_points, head_table, auc, out.heads_figure)
log.info("%d models x backbones: calibration, operating points, per-fold ROC; %d heads",
         len(brier.drop_duplicates(["model", "backbone"])), len(head_table))

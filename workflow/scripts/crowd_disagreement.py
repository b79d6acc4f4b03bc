"""Cheplygina & Pluim: AUC of predicting abnormal from annotations: crowdskin.crowd.analysis."""
from crowdskin import tables
from crowdskin.crowd.analysis import disagreement_table
from crowdskin.crowd.io import read_annotations
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic

log = to_rule_log(snakemake)
params = snakemake.params
annotations = read_annotations(*snakemake.input.annotations)
images = tables.read_table(snakemake.input.images, tables.IMAGES)
result = disagreement_table(annotations, images, params.experiments, folds=params.folds, seed=params.seed)
write_csv_atomic(result, snakemake.output.auc)
log.info("disagreement AUC:\n%s", result.to_string(index=False))

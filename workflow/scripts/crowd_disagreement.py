"""Cheplygina & Pluim: AUC of predicting abnormal from annotations: crowdskin.crowd.analysis."""
from crowdskin import tables
from crowdskin.crowd.analysis import disagreement_table
from crowdskin.crowd.io import read_annotations
from crowdskin.crowd.settings import crowd_settings
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic

log = to_rule_log(snakemake)  # noqa: F821
settings = crowd_settings(snakemake.config.get("crowd"))["disagreement"]  # noqa: F821
annotations = read_annotations(*snakemake.input.annotations)  # noqa: F821
images = tables.read_table(snakemake.input.images, tables.IMAGES)  # noqa: F821
result = disagreement_table(annotations, images, settings["experiments"], folds=settings["folds"],
                            seed=snakemake.config.get("seed", 42))  # noqa: F821
write_csv_atomic(result, snakemake.output.auc)  # noqa: F821
log.info("disagreement AUC:\n%s", result.to_string(index=False))

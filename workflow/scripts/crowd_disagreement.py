"""Cheplygina & Pluim: AUC of predicting abnormal from annotations: crowdskin.crowd.analysis."""
import pandas as pd

from crowdskin import tables
from crowdskin.crowd.analysis import disagreement_auc
from crowdskin.crowd.io import read_annotations
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic
from crowdskin.crowd.settings import crowd_settings

log = to_rule_log(snakemake)  # noqa: F821
settings = crowd_settings(snakemake.config.get("crowd"))["disagreement"]  # noqa: F821
annotations = read_annotations(*snakemake.input.annotations)  # noqa: F821
images = tables.read_table(snakemake.input.images, tables.IMAGES)  # noqa: F821
seed = snakemake.config.get("seed", 42)  # noqa: F821
frames = [disagreement_auc(annotations, images, experiment, folds=settings["folds"], seed=seed)
          for experiment in settings["experiments"]]
columns = ["experiment", "feature_set", "n_features", "n_lesions", "n_abnormal", "lesions_left_out",
           "folds", "auc_mean", "auc_std"]
result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
write_csv_atomic(result[columns], snakemake.output.auc)  # noqa: F821
log.info("disagreement AUC:\n%s", result.to_string(index=False))

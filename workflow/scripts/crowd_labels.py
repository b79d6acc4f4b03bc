"""Crowd labels per candidate image (majority vote and crowd-kit): crowdskin.crowd.labels."""
import pandas as pd

from crowdskin import tables
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic
from crowdskin.crowd.labels import crowd_labels, label_accuracy, true_candidate_labels
from crowdskin.crowd.schemas import CROWD_LABELS
from crowdskin.crowd.settings import crowd_settings

log = to_rule_log(snakemake)  # noqa: F821
settings = crowd_settings(snakemake.config.get("crowd"))["labels"]  # noqa: F821
kept = pd.read_parquet(snakemake.input.kept)  # noqa: F821
assignments = tables.read_table(snakemake.input.assignments, tables.MTURK_ASSIGNMENTS)  # noqa: F821
images = tables.read_table(snakemake.input.images, tables.IMAGES)  # noqa: F821
truth = true_candidate_labels(assignments, images)
labels = crowd_labels(kept, true_labels=truth, method=settings["method"], n_iter=settings["n_iter"])
tables.write_table(labels, CROWD_LABELS, snakemake.output.labels)  # noqa: F821
accuracy = label_accuracy(labels)
write_csv_atomic(accuracy, snakemake.output.accuracy)  # noqa: F821
log.info("crowd label accuracy:\n%s", accuracy.to_string(index=False))

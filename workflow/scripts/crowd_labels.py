"""Crowd labels per candidate image (majority vote and crowd-kit): crowdskin.crowd.labels."""
import pandas as pd

from crowdskin import tables
from crowdskin.crowd.labels import crowd_labels, label_accuracy, true_candidate_labels, worker_reliability
from crowdskin.logs import to_rule_log
from crowdskin.tables import CROWD_LABELS, write_csv_atomic

log = to_rule_log(snakemake)
kept = pd.read_parquet(snakemake.input.kept)
assignments = tables.read_table(snakemake.input.assignments, tables.MTURK_ASSIGNMENTS)
images = tables.read_table(snakemake.input.images, tables.IMAGES)
truth = true_candidate_labels(assignments, images)
labels = crowd_labels(kept, true_labels=truth, method=snakemake.params.method, n_iter=snakemake.params.n_iter)
tables.write_table(labels, CROWD_LABELS, snakemake.output.labels)
accuracy = label_accuracy(labels)
write_csv_atomic(accuracy, snakemake.output.accuracy)
workers = worker_reliability(kept, method=snakemake.params.method, n_iter=snakemake.params.n_iter)
write_csv_atomic(workers, snakemake.output.workers)
log.info("crowd label accuracy:\n%s", accuracy.to_string(index=False))

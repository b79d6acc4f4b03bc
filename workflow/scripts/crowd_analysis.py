"""ENHANCE's annotation tables and figures: crowdskin.crowd.analysis and crowdskin.crowd.figures."""
import pandas as pd

from crowdskin import tables
from crowdskin.crowd.analysis import annotation_counts, label_correlation, source_agreement
from crowdskin.crowd.figures import agreement_heatmap, raincloud
from crowdskin.crowd.io import read_annotations
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic

log = to_rule_log(snakemake)
annotations = read_annotations(*snakemake.input.annotations)
images = tables.read_table(snakemake.input.images, tables.IMAGES)
targets = pd.read_parquet(snakemake.input.targets)
out = snakemake.output
write_csv_atomic(annotation_counts(annotations), out.counts)
correlation = label_correlation(targets, images)
write_csv_atomic(correlation, out.correlation)
agreement = source_agreement(targets)
write_csv_atomic(agreement, out.agreement)
agreement_heatmap(agreement, out.agreement_figure)
raincloud(targets, images, out.raincloud, seed=snakemake.params.seed)
log.info("label correlation:\n%s", correlation.to_string(index=False))

"""Consensus targets per (lesion, source, feature): crowdskin.crowd.consensus."""
from crowdskin import tables
from crowdskin.crowd.consensus import consensus_targets
from crowdskin.crowd.io import read_annotations
from crowdskin.logs import to_rule_log
from crowdskin.tables import TARGETS

log = to_rule_log(snakemake)
annotations = read_annotations(*snakemake.input.annotations)
images = tables.read_table(snakemake.input.images, tables.IMAGES)
targets = consensus_targets(annotations, images, features=snakemake.params.features,
                            multi_group=snakemake.params.multi_group)
tables.write_table(targets, TARGETS, snakemake.output.targets)
summary = targets.groupby(["dataset", "source", "feature"])["available"].agg(["sum", "size"])
log.info("targets (available/lesions):\n%s", summary.to_string())

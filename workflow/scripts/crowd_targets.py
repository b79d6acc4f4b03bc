"""Consensus targets per (lesion, source, feature): crowdskin.crowd.consensus."""
from crowdskin import tables
from crowdskin.crowd.consensus import consensus_targets
from crowdskin.crowd.io import read_annotations
from crowdskin.logs import to_rule_log
from crowdskin.crowd.schemas import TARGETS
from crowdskin.crowd.settings import crowd_settings

log = to_rule_log(snakemake)  # noqa: F821
settings = crowd_settings(snakemake.config.get("crowd"))  # noqa: F821
annotations = read_annotations(*snakemake.input.annotations)  # noqa: F821
images = tables.read_table(snakemake.input.images, tables.IMAGES)  # noqa: F821
targets = consensus_targets(annotations, images, features=settings["target_features"], multi_group=settings["multi_group"])
tables.write_table(targets, TARGETS, snakemake.output.targets)  # noqa: F821
summary = targets.groupby(["dataset", "source", "feature"])["available"].agg(["sum", "size"])
log.info("targets (available/lesions):\n%s", summary.to_string())

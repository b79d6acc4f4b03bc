"""Snakemake adapter: assign each image to a shard (sorted ids, fixed shard size)."""
import pandas as pd

from crowdskin.automated.annotate import plan_shards
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
images = pd.read_parquet(snakemake.input.images)
plan = plan_shards(images, int(snakemake.params.shard_size))
plan.to_parquet(snakemake.output.plan, index=False)
log.info("%d images in %d shards of at most %d", len(plan), plan["shard"].nunique(), snakemake.params.shard_size)

"""Snakemake adapter: assign each image with a mask to a shard (sorted ids, `shard_size` masks each)."""
import pandas as pd

from crowdskin.automated.annotate import plan_shards
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
images = pd.read_parquet(snakemake.input.images)
plan = plan_shards(images, int(snakemake.params.shard_size))
plan.to_parquet(snakemake.output.plan, index=False)
planned = plan[plan["shard"] >= 0]
log.info("%d images: %d with a mask in %d shards of at most %d; %d without a mask, scored by none",
         len(plan), len(planned), planned["shard"].nunique(), snakemake.params.shard_size, len(plan) - len(planned))

"""Snakemake adapter: assign each image to a shard (sorted ids, fixed shard size)."""
import logging

import pandas as pd

from crowdskin.automated.sharding import plan_shards

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(message)s")
images = pd.read_parquet(snakemake.input.images)
plan = plan_shards(images, int(snakemake.params.shard_size))
plan.to_parquet(snakemake.output.plan, index=False)
logging.info("%d images in %d shards of at most %d", len(plan), plan["shard"].nunique(), snakemake.params.shard_size)

"""Snakemake adapter: join the shards and the rows no shard scores (no mask) into the wide table and
the long annotation rows."""
import pandas as pd

from crowdskin.automated.annotate import AUTOMATED, Settings, rows_without_work, to_annotations
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
settings = Settings.from_config(dict(snakemake.params.settings))
unscored = rows_without_work(pd.read_parquet(snakemake.input.plan), settings)
shards = [pd.read_parquet(path) for path in snakemake.input.shards]
wide = AUTOMATED.validate(pd.concat([*shards, unscored], ignore_index=True).sort_values("image_id", ignore_index=True))
wide.to_parquet(snakemake.output.wide, index=False)
long = to_annotations(wide, origin_file=snakemake.output.wide)
long.to_parquet(snakemake.output.long, index=False)
log.info("%d images (%d without a mask, in no shard), %d annotation rows; status: %s", len(wide), len(unscored),
         len(long), wide["status"].value_counts().to_dict())

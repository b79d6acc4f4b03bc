"""Snakemake adapter: join the shards into the wide table and the long annotation rows."""
import pandas as pd

from crowdskin.automated.annotate import AUTOMATED, to_annotations
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
shards = [pd.read_parquet(path) for path in snakemake.input]
wide = AUTOMATED.validate(pd.concat(shards, ignore_index=True).sort_values("image_id", ignore_index=True))
wide.to_parquet(snakemake.output.wide, index=False)
long = to_annotations(wide, origin_file=snakemake.output.wide)
long.to_parquet(snakemake.output.long, index=False)
log.info("%d images, %d annotation rows; status: %s", len(wide), len(long), wide["status"].value_counts().to_dict())

"""Snakemake adapter: the images table with each image's clean rendering of the shortcut trap
(crowdskin.explain.shortcut)."""
import pandas as pd

from crowdskin.explain.shortcut import clean_images
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
images = pd.read_parquet(snakemake.input.images)
clean = clean_images(images, snakemake.input.shortcut)
clean.to_parquet(snakemake.output.images, index=False)
log.info("%d images point at their clean renderings", len(clean))

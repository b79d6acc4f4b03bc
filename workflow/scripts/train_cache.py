"""Snakemake adapter: every trainable image resized once to {size} px (results/train/cache/)."""
import pandas as pd

from crowdskin.logs import to_rule_log
from crowdskin.train.cache import build_image_cache, write_cache

log = to_rule_log(snakemake)
size = int(snakemake.wildcards.size)
images = pd.read_parquet(snakemake.input.images, columns=["image_id", "image_path"])
wanted = set(pd.read_parquet(snakemake.input.folds, columns=["image_id"])["image_id"])
images = images[images["image_id"].isin(wanted)]
array, index = build_image_cache(images, size, threads=snakemake.threads)
write_cache(array, index, snakemake.output.array, snakemake.output.index)
failed = index[index["row"] < 0]
log.info("%d images cached at %d px (%.1f MB); %d unreadable", len(array), size, array.nbytes / 2**20, len(failed))
for _, row in failed.iterrows():
    log.warning("%s: %s", row["image_id"], row["reason"])

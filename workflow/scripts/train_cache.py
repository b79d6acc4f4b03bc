"""Snakemake adapter: every trainable image resized once to {size} px (results/train/cache/)."""
from pathlib import Path

import pandas as pd

from crowdskin.logs import to_rule_log
from crowdskin.train.cache import CacheError, build_image_cache, check_space, write_cache
from crowdskin.train.splits import read_folds

log = to_rule_log(snakemake)
size = int(snakemake.wildcards.size)
images = pd.read_parquet(snakemake.input.images, columns=["image_id", "image_path", "abnormal"])
folds, _, _ = read_folds(snakemake.input.folds)
images = images[images["image_id"].isin(set(folds["image_id"]))]
try:
    # Before decoding: a full disk should stop the job in a second, not after every image is read.
    check_space(Path(snakemake.output.array).parent, len(images) * size * size * 3)
    array, index = build_image_cache(images, size, threads=snakemake.threads)
    write_cache(array, index, snakemake.output.array, snakemake.output.index,
                labels=images.set_index("image_id")["abnormal"])
except CacheError as error:
    log.error("%s", error)
    raise
failed = index[index["row"] < 0]
log.info("%d images cached at %d px (%.1f MB); %d unreadable", len(array), size, array.nbytes / 2**20, len(failed))
for _, row in failed.iterrows():
    log.warning("%s: %s", row["image_id"], row["reason"])

"""Snakemake adapter: annotate one shard with all the job's threads."""
import time

import pandas as pd

from crowdskin.automated.annotate import Settings, annotate_table
from crowdskin.logs import to_rule_log


def main(snakemake) -> None:
    log = to_rule_log(snakemake)
    rows = pd.DataFrame(list(snakemake.params.rows), columns=["image_id", "dataset", "image_path", "mask_path"])
    started = time.perf_counter()
    settings = Settings.from_config(dict(snakemake.params.settings))
    table = annotate_table(rows, settings, workers=snakemake.threads)
    table.to_parquet(snakemake.output[0], index=False)
    log.info(
        "%d images in %.1f s with %d workers; status: %s", len(table), time.perf_counter() - started,
        snakemake.threads, table["status"].value_counts().to_dict(),
    )
    for row in table[table["reason"].notna()].itertuples():
        log.info("%s %s: %s", row.image_id, row.status, row.reason)


main(snakemake)

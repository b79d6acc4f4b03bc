"""Snakemake adapter: the crowd's candidate pool (crowdskin.crowd.labels.candidate_pool)."""
from crowdskin import tables
from crowdskin.crowd.labels import candidate_pool
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
pool = candidate_pool(tables.read_table(snakemake.input.assignments, tables.MTURK_ASSIGNMENTS))
pool.to_parquet(snakemake.output.pool, index=False)
log.info("%d candidate images in the crowd pool", len(pool))

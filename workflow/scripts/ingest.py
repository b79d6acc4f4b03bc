"""Raw files -> images, annotations, mturk_assignments, quarantine (+ per-file counts)."""

from crowdskin import tables
from crowdskin.ingest import ingest_all
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
out = snakemake.output
result = ingest_all(snakemake.params.ingest, snakemake.params.raw, snakemake.params.url_lists)
tables.write_table(result.images, tables.IMAGES, out.images)
tables.write_table(result.annotations, tables.ANNOTATIONS, out.annotations)
tables.write_table(result.mturk_assignments, tables.MTURK_ASSIGNMENTS, out.mturk)
tables.write_table(result.quarantine, tables.QUARANTINE, out.quarantine)
result.counts.to_csv(out.counts, index=False)
log.info("%d lesions, %d annotations, %d MTurk assignments, %d quarantined",
         len(result.images), len(result.annotations), len(result.mturk_assignments), len(result.quarantine))

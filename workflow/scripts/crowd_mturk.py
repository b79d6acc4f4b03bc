"""MTurk filtering funnel: crowdskin.crowd.mturk."""
from crowdskin import tables
from crowdskin.crowd.mturk import FilterSettings, apply_filters, export_ids, quarantined_assignments
from crowdskin.logs import to_rule_log
from crowdskin.tables import kept_assignments_schema, write_csv_atomic

log = to_rule_log(snakemake)
settings = FilterSettings.from_config(snakemake.params.mturk)
assignments = tables.read_table(snakemake.input.assignments, tables.MTURK_ASSIGNMENTS)
quarantine = tables.read_table(snakemake.input.quarantine, tables.QUARANTINE)
quarantined = quarantined_assignments(quarantine)
files = sorted(set(assignments["origin_file"]) | set(quarantined["origin_file"]))
result = apply_filters(assignments, quarantined, settings, export_ids(files))
tables.write_parquet_atomic(result.decisions, snakemake.output.decisions)
tables.write_table(result.kept, kept_assignments_schema(settings.rules), snakemake.output.kept)
write_csv_atomic(result.funnel, snakemake.output.funnel)
log.info("funnel:\n%s", result.funnel.drop(columns="description").to_string(index=False))

"""MTurk filtering funnel: crowdskin.crowd.mturk."""
from crowdskin import tables
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic
from crowdskin.crowd.mturk import FilterSettings, apply_filters, export_ids, quarantined_assignments
from crowdskin.crowd.schemas import kept_assignments_schema
from crowdskin.crowd.settings import crowd_settings

log = to_rule_log(snakemake)  # noqa: F821
settings = FilterSettings.from_config(crowd_settings(snakemake.config.get("crowd"))["mturk"])  # noqa: F821
assignments = tables.read_table(snakemake.input.assignments, tables.MTURK_ASSIGNMENTS)  # noqa: F821
quarantine = tables.read_table(snakemake.input.quarantine, tables.QUARANTINE)  # noqa: F821
quarantined = quarantined_assignments(quarantine)
files = sorted(set(assignments["origin_file"]) | set(quarantined["origin_file"]))
result = apply_filters(assignments, quarantined, settings, export_ids(files))
tables.write_parquet_atomic(result.decisions, snakemake.output.decisions)  # noqa: F821
tables.write_table(result.kept, kept_assignments_schema(settings.rules), snakemake.output.kept)  # noqa: F821
write_csv_atomic(result.funnel, snakemake.output.funnel)  # noqa: F821
log.info("funnel:\n%s", result.funnel.drop(columns="description").to_string(index=False))

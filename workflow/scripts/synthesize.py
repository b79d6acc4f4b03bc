"""Generate the embedded synthetic dataset under resources/raw/synthetic."""

from crowdskin.acquire.fetch import FileRecord, write_marker
from crowdskin.logs import to_rule_log
from crowdskin.synthetic import SyntheticSettings, generate

log = to_rule_log(snakemake)  # noqa: F821
settings = dict(snakemake.params.settings)  # noqa: F821
settings.pop("enabled")
settings.update(settings.pop("mturk"))
written = generate("resources/raw/synthetic", SyntheticSettings(seed=snakemake.params.seed, **settings))  # noqa: F821
log.info("wrote %d files", len(written))
write_marker(snakemake.output[0], "synthetic", "generated",  # noqa: F821
             [FileRecord("synthetic", f"synthetic/{w}", "generated", "synthetic, seeded") for w in written])

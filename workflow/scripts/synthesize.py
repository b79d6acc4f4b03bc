"""Generate the embedded synthetic dataset under resources/synthetic/<run_name>/synthetic."""

from pathlib import Path

from crowdskin.acquire.fetch import FileRecord, write_marker
from crowdskin.logs import to_rule_log
from crowdskin.synthetic import SyntheticSettings, generate

log = to_rule_log(snakemake)
settings = SyntheticSettings.from_config(snakemake.params.settings, seed=snakemake.params.seed)
written = generate(Path(snakemake.params.raw) / "synthetic", settings)
log.info("wrote %d files", len(written))
write_marker(snakemake.output.marker, "synthetic", "generated",
             [FileRecord("synthetic", f"synthetic/{w}", "generated", "synthetic, seeded") for w in written])

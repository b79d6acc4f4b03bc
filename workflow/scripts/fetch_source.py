"""Fetch one manifest source (network or mirror) into resources/raw and write its marker."""

from pathlib import Path

from crowdskin.acquire.fetch import DownloadSettings, fetch_from_mirror, fetch_from_network, write_marker
from crowdskin.acquire.manifest import load_manifest
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)  # noqa: F821
source = load_manifest(snakemake.input.manifest)[snakemake.wildcards.source]  # noqa: F821
raw = Path("resources/raw")
if snakemake.params.mirror:  # noqa: F821
    log.info("reading %s from mirror %s", source.name, snakemake.params.mirror)  # noqa: F821
    records = fetch_from_mirror(source, Path(snakemake.params.mirror), raw, Path(snakemake.params.checksum_dir))  # noqa: F821
    mode = "mirror"
else:
    log.info("downloading %s from %s", source.name, source.url)
    records = fetch_from_network(source, raw, Path("resources/downloads"), DownloadSettings(**snakemake.params.download))  # noqa: F821
    mode = "download"
log.info("%d files", len(records))
write_marker(snakemake.output[0], source.name, mode, records)  # noqa: F821

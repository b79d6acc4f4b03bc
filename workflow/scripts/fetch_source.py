"""Fetch one manifest source (network or mirror) into resources/raw and write its marker."""

from pathlib import Path

from crowdskin.acquire.fetch import DownloadSettings, fetch_from_mirror, fetch_from_network, write_marker
from crowdskin.acquire.manifest import load_manifest
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
params = snakemake.params
source = load_manifest(snakemake.input.manifest)[snakemake.wildcards.source]
raw = Path(params.raw)
if params.mirror:
    log.info("reading %s from mirror %s", source.name, params.mirror)
    # workflow/checksums/ beside the manifest: found from an input, so no param names this checkout's path
    checksum_dir = Path(snakemake.input.manifest).parent / "checksums"
    records = fetch_from_mirror(source, Path(params.mirror), raw, checksum_dir)
    mode = "mirror"
else:
    log.info("downloading %s from %s", source.name, source.url)
    records = fetch_from_network(source, raw, raw.parent / "downloads", DownloadSettings(**params.download))
    mode = "download"
log.info("%d files", len(records))
write_marker(snakemake.output[0], source.name, mode, records)

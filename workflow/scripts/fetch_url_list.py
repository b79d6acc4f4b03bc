"""Fetch a URL-list dataset; dead links go to the report, not to a failure."""

from pathlib import Path

from crowdskin.acquire.fetch import DownloadSettings, write_marker
from crowdskin.acquire.url_list import fetch_url_list
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
params = snakemake.params
entry = params.entry
labels, records = fetch_url_list(
    snakemake.input.csv, entry["name"], Path(params.raw),
    url_column=entry["url_column"], label_column=entry["label_column"], id_column=entry["id_column"],
    mirror=params.mirror, settings=DownloadSettings(**params.download),
)
log.info("%d of %d images fetched", int((labels.status == "ok").sum()), len(labels))
write_marker(snakemake.output[0], f"url_list:{entry['name']}", "mirror" if params.mirror else "download", records)

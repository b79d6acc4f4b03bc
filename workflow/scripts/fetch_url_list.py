"""Fetch a URL-list dataset; dead links go to the report, not to a failure."""

from pathlib import Path

from crowdskin.acquire.fetch import DownloadSettings, write_marker
from crowdskin.acquire.url_list import fetch_url_list
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)  # noqa: F821
entry = snakemake.params.entry  # noqa: F821
labels, records = fetch_url_list(
    snakemake.input.csv, entry["name"], Path("resources/raw"),  # noqa: F821
    url_column=entry["url_column"], label_column=entry["label_column"], id_column=entry["id_column"],
    mirror=snakemake.params.mirror, settings=DownloadSettings(**snakemake.params.download),  # noqa: F821
)
log.info("%d of %d images fetched", int((labels.status == "ok").sum()), len(labels))
write_marker(snakemake.output[0], f"url_list:{entry['name']}", "mirror" if snakemake.params.mirror else "download", records)  # noqa: F821

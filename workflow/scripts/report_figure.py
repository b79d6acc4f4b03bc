"""Snakemake adapter: one figure of the report as a page under its caption (crowdskin.report)."""
from pathlib import Path

from crowdskin import report
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
inp, params = snakemake.input, snakemake.params
page = report.figure_page(params.title, Path(inp.caption).read_text(encoding="utf-8"), Path(inp.figure).read_bytes(),
                          params.values)
Path(snakemake.output[0]).write_text(page, encoding="utf-8")
log.info("wrote %s", snakemake.output[0])

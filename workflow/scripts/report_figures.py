"""Snakemake adapter: each figure of the report as a page under its caption (crowdskin.report)."""
from pathlib import Path

from crowdskin import report
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
inp, params = snakemake.input, snakemake.params
for figure, caption, title, page in zip(inp.figures, inp.captions, params.titles, snakemake.output, strict=True):
    Path(page).write_text(report.figure_page(title, Path(caption).read_text(encoding="utf-8"),
                                             Path(figure).read_bytes(), params.values), encoding="utf-8")
log.info("wrote %d figure pages", len(snakemake.output))

"""One line per fetched file, from every source's marker."""

from crowdskin.acquire.fetch import download_report
from crowdskin.logs import to_rule_log

to_rule_log(snakemake)
download_report(snakemake.input).to_csv(snakemake.output[0], index=False)

"""Logging for Snakemake scripts: everything a job says goes to its rule's log file."""

import logging
import sys


def to_rule_log(snakemake) -> logging.Logger:  # the Snakemake script object
    if snakemake.log:
        handle = open(snakemake.log[0], "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the job
        sys.stderr = handle
        logging.basicConfig(stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                            force=True)
        logging.captureWarnings(True)
    return logging.getLogger(snakemake.rule)

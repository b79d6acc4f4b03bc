# Helpers shared by every rule file: validated config, paths, the list of final targets.
import json
from pathlib import Path

from crowdskin.config import ConfigError, validate_config

try:
    config.update(
        validate_config(config, source=", ".join(map(str, workflow.configfiles)) or "config")
    )
except ConfigError as error:
    raise WorkflowError(str(error)) from None

RAW = "resources/raw"
FETCHED = f"{RAW}/.fetched"
DATA = "results/data"
LOGS = "results/logs"

# Each rule file appends the outputs that `snakemake` (rule all) should build.
ALL_TARGETS = []


def script_path(name):
    return f"../scripts/{name}"

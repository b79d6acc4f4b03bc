"""Run the workflow in a scratch working directory (never the user's results/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
# Tests that kill processes and whole runs take minutes: `make test` skips them, `make test-faults`
# (and CI) runs them.
fault_test = pytest.mark.skipif(not os.environ.get("CROWDSKIN_FAULT_TESTS"),
                                reason="kills processes and whole runs (minutes): `make test-faults` runs it (CI does)")

# Whole runs of other configs through other entry points (the workflow deployed as a module, the
# example study's generic inputs), about 2 min together: `make test` skips them, `make test-deploy`
# (and CI) runs them.
deploy_test = pytest.mark.skipif(not os.environ.get("CROWDSKIN_DEPLOY_TESTS"),
                                 reason="a whole run of another config (minutes): `make test-deploy` runs it (CI does)")


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`snakemake -s <repo>/Snakefile -d <workdir> <args>`; targets must come before --config/--configfile."""
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def epochs_backed_up(job: Path) -> int:
    """Epochs a training job's checkpoint holds (0 when it has none, or its record is being written)."""
    metadata = job / "checkpoint" / "backup" / "training_metadata.json"
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0

"""The Slurm profile on a real cluster: runs only where `sinfo` answers (start a one-node cluster
with `bash profiles/slurm/local-cluster.sh start`); skipped otherwise, as in CI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from workflow_runner import REPO, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture
def slurm_cluster() -> None:
    """Skips unless a Slurm controller answers with a usable node (asked here, not at collection:
    sinfo waits ~9 s for a controller that is down)."""
    if shutil.which("sinfo") is None:
        pytest.skip("no Slurm client installed (sinfo not found)")
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip("sinfo did not answer within 30 s")
    if result.returncode != 0 or not any(state in result.stdout for state in ("idle", "mix")):
        answer = result.stderr.strip() or result.stdout.strip()
        pytest.skip(f"no Slurm cluster with an idle node answers sinfo ({answer}); "
                    "start one with profiles/slurm/local-cluster.sh start")


def test_a_training_job_runs_through_the_slurm_profile(tmp_path, slurm_cluster):
    job = "results/train/multitask-automated-asymmetry/vgg16/fold0"
    result = snakemake(tmp_path, f"{job}/metrics.json", "--profile", str(REPO / "profiles" / "slurm"))
    metrics = json.loads((tmp_path / job / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["mlflow_run_id"]
    # the training job went through sbatch (the plugin deletes the Slurm logs of successful jobs)
    submitted = re.search(r"rule train_job_without_model:.*?submitted with SLURM jobid (\d+)",
                          result.stdout + result.stderr, re.S)
    assert submitted, "the training job was not submitted to Slurm"
    # inside a Slurm job the default config's warm worker is bypassed: no server was started
    assert not (tmp_path / "results/logs/train_worker.log").exists()

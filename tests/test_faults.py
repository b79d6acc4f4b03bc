"""Faults as a user meets them: the whole `snakemake` process tree SIGKILLed during the annotation
shards and again during training, then `snakemake --unlock` and `--rerun-incomplete`. The run must
complete, nothing half-written may count as done, and the killed training job must resume from its
last finished epoch.

These runs take about two minutes, so `make test` skips them; `make test-faults` runs them, and so
does CI (`.ci/run`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from workflow_runner import REPO, SNAKEMAKE, epochs_backed_up, fault_test, snakemake

pytestmark = [pytest.mark.slow, fault_test]
TEST_CONFIG = REPO / ".test" / "config.yaml"
# Layered on the test config: epochs long enough (12 eager steps, about 0.7 s on two cores) to kill a
# job between two of them. The kill lands within 50 ms of the poll (the warm worker's select loop
# stops the job of a killed client), and the window below spans three epochs. Every job of the re-run
# trains at this length, so longer epochs cost minutes of CI.
SLOW_EPOCHS = "train: {epochs: 6, steps_per_epoch: 12, backbone_checks: []}\n"
EPOCHS = 6


def _start(workdir: Path, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """The whole run, in its own process group so that one SIGKILL reaches every process of it."""
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *options,
               "--configfile", str(TEST_CONFIG), str(workdir / "slow.yaml")]
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _wait_for(found, process: subprocess.Popen[bytes], what: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        assert process.poll() is None, f"the run ended before {what}"
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout} s")


def test_a_run_killed_in_annotation_and_in_training_completes_and_resumes(tmp_path):
    (tmp_path / "slow.yaml").write_text(SLOW_EPOCHS)
    log = tmp_path / "snakemake.log"

    # 1. Killed while the annotation shards run: a shard job has started (its log exists).
    run = _start(tmp_path, log)
    _wait_for(lambda: list((tmp_path / "results/test/logs/automated").glob("shard_*.log")), run, "annotation shard")
    _kill_tree(run)

    # 2. Started again as before, the run is refused with the fix named: the lock the kill left, or the
    # outputs of the jobs it interrupted, which are never taken as done (which one comes first
    # depends on where the kill fell).
    refused = snakemake(tmp_path, "--configfile", str(TEST_CONFIG), str(tmp_path / "slow.yaml"), check=False)
    message = refused.stdout + refused.stderr
    assert refused.returncode != 0 and ("--unlock" in message or "--rerun-incomplete" in message), message[-2000:]
    snakemake(tmp_path, "--unlock", "--configfile", str(TEST_CONFIG), str(tmp_path / "slow.yaml"))

    # 3. Killed in training, once a job has finished two of its six epochs.
    run = _start(tmp_path, log, "--rerun-incomplete")

    def job_past_epoch_two():
        for metadata in (tmp_path / "results/test/train").glob("*/*/fold*/checkpoint/backup/training_metadata.json"):
            job = metadata.parents[2]
            if 2 <= epochs_backed_up(job) < EPOCHS - 1:
                return job
        return None

    killed_job = _wait_for(job_past_epoch_two, run, "training job past its second epoch")
    _kill_tree(run)
    done_at_kill = epochs_backed_up(killed_job)
    assert not (killed_job / "metrics.json").exists()  # the job had not finished

    # 4. Unlock and re-run what was incomplete: the run completes.
    snakemake(tmp_path, "--unlock", "--configfile", str(TEST_CONFIG), str(tmp_path / "slow.yaml"))
    snakemake(tmp_path, "--rerun-incomplete", "--configfile", str(TEST_CONFIG), str(tmp_path / "slow.yaml"))
    final = snakemake(tmp_path, "-n", "--configfile", str(TEST_CONFIG), str(tmp_path / "slow.yaml")).stdout
    assert "Nothing to be done" in final

    # The killed job resumed after the epochs it had finished, and ended with each epoch once.
    run_dir = tmp_path / "results" / "test"
    job_log = (run_dir / "logs" / "train" / killed_job.relative_to(run_dir / "train")).with_suffix(".log")
    resumed = [int(n) for n in re.findall(r"resuming from checkpoint: (\d+) epoch", job_log.read_text())]
    assert resumed and resumed[-1] >= done_at_kill >= 2
    history = pd.read_csv(killed_job / "history.csv")
    assert list(history["epoch"]) == list(range(1, EPOCHS + 1))
    assert not (killed_job / "checkpoint").exists() and json.loads((killed_job / "metrics.json").read_text())

    # Nothing half-written counts as done: every annotation shard and prediction table reads whole.
    for shard in (tmp_path / "results/test/annotations/automated_shards").glob("shard_*.parquet"):
        assert len(pd.read_parquet(shard)) > 0, shard
    for predictions in (tmp_path / "results/test/train").glob("*/*/fold*/predictions.parquet"):
        assert {"train", "val", "test"} <= set(pd.read_parquet(predictions)["split"]), predictions


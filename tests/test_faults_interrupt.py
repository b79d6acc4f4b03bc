"""Ctrl-C as a terminal sends it: SIGINT to the whole `snakemake` process group while training jobs run
in the warm worker, after at least one of them has finished an epoch. The run must end with one line
naming what it stopped and the command that resumes it, with no Python traceback on the terminal or in
the stopped jobs' logs; that command must finish the run, the stopped job continuing from its
checkpoint, and the store must hold one MLflow run per job.

A whole run up to the training summary (about two minutes), so `make test` skips it and `make
test-faults` runs it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from workflow_runner import REPO, SNAKEMAKE, epochs_backed_up, fault_test, snakemake

pytestmark = [pytest.mark.slow, fault_test]
TEST_CONFIG = REPO / ".test" / "config.yaml"
# Layered on the test config: epochs long enough (12 eager steps, about 0.7 s on two cores) for
# Ctrl-C to fall between two of them: a job dies with its client (SIGINT's default action in the
# forked job), and the window below spans two epochs. Every job trains at this length.
EPOCHS = 4
SLOW_EPOCHS = f"train: {{epochs: {EPOCHS}, steps_per_epoch: 12, backbone_checks: []}}\n"
TARGET = "results/test/train/runs.csv"  # the training stage and what it needs, not evaluation


def test_ctrl_c_in_training_ends_with_one_line_and_resumes_into_the_same_runs(tmp_path):
    (tmp_path / "slow.yaml").write_text(SLOW_EPOCHS)
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "2", TARGET,
               "--configfile", str(TEST_CONFIG), str(tmp_path / "slow.yaml")]
    log = tmp_path / "ctrl-c.log"
    with open(log, "wb") as out:  # its own process group, as a terminal's foreground job is
        run = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def job_past_an_epoch() -> Path | None:
        for metadata in (tmp_path / "results/test/train").glob("*/*/fold*/checkpoint/backup/training_metadata.json"):
            if 1 <= epochs_backed_up(metadata.parents[2]) < EPOCHS - 1:
                return metadata.parents[2]
        return None

    deadline = time.monotonic() + 300
    while (stopped_job := job_past_an_epoch()) is None:
        assert run.poll() is None and time.monotonic() < deadline, "no training job past its first epoch"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)
    done_at_interrupt = epochs_backed_up(stopped_job)
    assert run.wait(timeout=120) != 0
    assert not (stopped_job / "metrics.json").exists()  # it was stopped, not finished

    output = log.read_text()
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1].startswith("Stopped by Ctrl-C: "), output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    run_dir = tmp_path / "results" / "test"
    job_log = (run_dir / "logs" / "train" / stopped_job.relative_to(run_dir / "train")).with_suffix(".log")
    job_lines = [line for line in job_log.read_text().splitlines() if line.strip()]
    assert "stopped by Ctrl-C" in job_lines[-1] and "Traceback" not in job_log.read_text(), job_lines[-5:]
    task, backbone, fold = stopped_job.relative_to(run_dir / "train").parts
    assert f"task={task}, backbone={backbone}, fold={fold.removeprefix('fold')}" in lines[-1]

    # The command the line gives resumes the run, as is.
    resume = shlex.split(lines[-1].split("Resume with: ", 1)[1])
    assert "--rerun-incomplete" in resume
    resumed = subprocess.run(resume, cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = snakemake(tmp_path, TARGET, "-n", "--configfile", str(TEST_CONFIG), str(tmp_path / "slow.yaml"))
    assert "Nothing to be done" in final.stdout

    # The stopped job continued after its finished epochs and ended with each epoch once.
    continued = [int(n) for n in re.findall(r"resuming from checkpoint: (\d+) epoch", job_log.read_text())]
    assert continued and continued[-1] >= done_at_interrupt >= 1
    assert list(pd.read_csv(stopped_job / "history.csv")["epoch"]) == list(range(1, EPOCHS + 1))

    # One MLflow run per job, each finished, and the one runs.csv names for it.
    from mlflow.tracking import MlflowClient

    experiment = json.loads((run_dir / "train" / "mlflow_experiment.json").read_text())
    client = MlflowClient(tracking_uri=experiment["tracking_uri"])
    logged = client.search_runs([experiment["experiment_id"]], max_results=1000)
    per_job = Counter(run.info.run_name for run in logged)
    assert per_job and max(per_job.values()) == 1, [name for name, n in per_job.items() if n > 1]
    assert {run.info.status for run in logged} == {"FINISHED"}
    runs_csv = pd.read_csv(run_dir / "train" / "runs.csv")
    assert set(runs_csv["mlflow_run_id"]) == {run.info.run_id for run in logged}
    assert {run.data.tags["crowdskin.namespace"] for run in logged} == {experiment["namespace"]}

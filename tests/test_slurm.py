"""The Slurm profile end to end on a real cluster: ingest, automated shards, crowd, split, training
jobs of every backbone and the ensembles, all through `snakemake --profile profiles/slurm` on
.test/config.yaml + .test/slurm.yaml. What the jobs asked Slurm for is read back from Slurm itself
(`scontrol show job`: finished jobs stay visible for MinJobAge seconds).

Runs only with CROWDSKIN_SLURM_TESTS=1: `make test-slurm` sets it around a one-node cluster of its
own (profiles/slurm/local-cluster.sh run), and CI runs that target; `make test` skips it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

from workflow_runner import REPO, SNAKEMAKE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.slurm,
    pytest.mark.skipif(not os.environ.get("CROWDSKIN_SLURM_TESTS"),
                       reason="needs a Slurm cluster and minutes: `make test-slurm` starts a one-node one "
                              "and runs it (CI does)"),
]

CONFIGS = [REPO / ".test" / "config.yaml", REPO / ".test" / "slurm.yaml"]
# The workflow's whole run on the small config stays near 3 min on 2 cores; far past that, a job is
# stuck in the queue and waiting longer only hides why.
RUN_TIMEOUT_S = 480
TRAINING_RULES = ("train_job", "train_job_without_model", "train_annotator_job", "train_annotator_job_without_model",
                  "train_backbone_check")


def merge(base: dict, update: dict) -> dict:
    """Snakemake's layering of --configfile files: mappings merge key by key, the later file wins."""
    merged = dict(base)
    for key, value in update.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if nested else value
    return merged


def merged_config() -> dict:
    config: dict = {}
    for path in [REPO / "config" / "config.yaml", *CONFIGS]:
        config = merge(config, yaml.safe_load(path.read_text()))
    return config


def require_cluster() -> None:
    """Fails, not skips: whoever set CROWDSKIN_SLURM_TESTS expects a cluster, and a skip would pass CI."""
    if shutil.which("sinfo") is None:
        pytest.fail("CROWDSKIN_SLURM_TESTS is set but no Slurm client is installed: run `make test-slurm`")
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("sinfo did not answer within 30 s: is slurmctld running?")
    if result.returncode != 0 or not any(state in result.stdout for state in ("idle", "mix")):
        answer = result.stderr.strip() or result.stdout.strip()
        pytest.fail(f"no Slurm node is idle ({answer}): `bash profiles/slurm/local-cluster.sh start`")


def scontrol_job(slurm_id: str) -> dict[str, str]:
    """`scontrol show job -o` as a dict (Comment is the plugin's `rule_<rule or group>[_wildcards_…]`)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", out))


def run_snakemake(workdir: Path, targets: list[str]) -> str:
    """The profile as users run it, but the first status check after 1 s, not 40: the plugin then
    waits 10 s more after each check that finds nothing finished, so a job of a few seconds is seen
    done after ~12 s instead of 40, and the workflow's dozen stages in a row add up."""
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
               "--profile", str(REPO / "profiles" / "slurm"), "--slurm-init-seconds-before-status-checks", "1",
               *targets, "--configfile", *map(str, CONFIGS)]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # A Snakemake waiting on Slurm may ignore SIGTERM; its jobs would outlive it.
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
        if submitted:
            subprocess.run(["scancel", *submitted], check=False, timeout=30)
        pytest.fail(f"snakemake --profile profiles/slurm ran past {RUN_TIMEOUT_S} s:\n{output[-6000:]}")
    if process.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{output[-8000:]}")
    # The profile retries a failed job once; a pass that needed it is worth a look, not a red CI.
    failed = re.findall(r"Error in rule (\w+):", output)
    if failed:
        warnings.warn(f"jobs failed once and passed on retry: {failed}", stacklevel=1)
    return output


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    """One run of the small config through the profile; the tests below read its outputs and jobs."""
    require_cluster()
    config = merged_config()
    workdir = tmp_path_factory.mktemp("slurm")
    results = f"results/{config['run_name']}"
    folds = range(config["split"]["n_folds"])
    backbones = config["train"]["backbones"]
    ensembles = config["evaluate"]["ensembles"]
    # (Slurm comment the plugin gives the job, its metrics.json) for each training job the ensembles
    # and the backbone checks need; the baseline keeps its model (crowdsim fine-tunes it): train_job
    training = {
        f"rule_{'train_job' if task == 'baseline' else 'train_job_without_model'}_wildcards_{task}_{backbone}_{fold}":
            f"{results}/train/{task}/{backbone}/fold{fold}/metrics.json"
        for task in sorted({task for tasks in ensembles.values() for task in tasks})
        for backbone in backbones for fold in folds
    }
    training |= {f"rule_train_backbone_check_wildcards_baseline_{backbone}_0":
                 f"{results}/train/checks/baseline/{backbone}/fold0/metrics.json"
                 for backbone in config["train"]["backbone_checks"]}
    targets = [f"{results}/ensembles/{name}/{backbone}/fold{fold}/predictions.parquet"
               for name in ensembles for backbone in backbones for fold in folds]
    targets += [path for comment, path in training.items() if "backbone_check" in comment]
    targets.append(f"{results}/train/runs.csv")  # train_summary: logs the runs the jobs left pending
    output = run_snakemake(workdir, targets)
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
    return {
        "workdir": workdir, "results": results, "output": output, "targets": targets, "training": training,
        "jobs": {slurm_id: scontrol_job(slurm_id) for slurm_id in submitted},
        "n_ensembles": len(ensembles),
    }


def finished(output: str, rule: str) -> int:
    """Snakemake's count of finished jobs of one rule (group members are reported one by one)."""
    return len(re.findall(rf"Finished jobid: \S+ \(Rule: {rule}\)", output))


def submissions(jobs: dict[str, dict[str, str]], comment_prefix: str) -> dict[str, dict[str, str]]:
    return {i: job for i, job in jobs.items() if job.get("Comment", "").startswith(comment_prefix)}


def asks_for_gpu(job: dict[str, str]) -> bool:
    # --gpus=1 as Slurm 22.05 holds it: TresPerJob=gres:gpu:1 (TresPerNode for --gres=gpu:1)
    return bool(re.search(r"gpu[:=]1\b", job.get("TresPerJob", "") + " " + job.get("TresPerNode", "")))


def test_every_stage_ran_through_slurm_and_wrote_its_outputs(slurm_run):
    workdir, results = slurm_run["workdir"], slurm_run["results"]
    shards = sorted((workdir / results / "annotations" / "automated_shards").glob("shard_*.parquet"))
    expected = [
        f"{results}/data/images.parquet",
        f"{results}/annotations/automated.parquet",
        f"{results}/crowd/targets.parquet",
        f"{results}/splits/folds.parquet",
        *slurm_run["training"].values(),
        *slurm_run["targets"],
    ]
    missing = [path for path in expected if not (workdir / path).is_file()]
    assert not missing, f"missing outputs: {missing}"
    assert len(shards) == finished(slurm_run["output"], "automated_shard") > 1
    # the stages before training went to Slurm too, not only the training jobs
    comments = {job.get("Comment", "") for job in slurm_run["jobs"].values()}
    for rule in ("synthesize", "ingest", "automated_plan", "automated_collect", "crowd_targets", "split_folds",
                 "train_cache"):
        assert any(c.startswith(f"rule_{rule}") for c in comments), f"{rule} was not submitted to Slurm"
    # inside a Slurm job the default config's warm worker is bypassed: no server was started
    assert not (workdir / results / "logs" / "train_worker.log").exists()


def test_each_training_job_asked_slurm_for_a_gpu(slurm_run):
    jobs = slurm_run["jobs"]
    training = {i: job for i, job in jobs.items()
                if job.get("Comment", "").startswith(tuple(f"rule_{rule}_wildcards_" for rule in TRAINING_RULES))}
    never = set(slurm_run["training"]) - {job["Comment"] for job in training.values()}
    assert not never, f"training jobs never submitted to Slurm: {never}"
    without_gpu = {i: (job["Comment"], job.get("TresPerJob")) for i, job in training.items() if not asks_for_gpu(job)}
    assert not without_gpu, f"training jobs submitted without a GPU request: {without_gpu}"
    # and only they: the request comes from the training rules, not from the profile's defaults
    others = {i: job.get("Comment") for i, job in jobs.items() if i not in training and asks_for_gpu(job)}
    assert not others, f"jobs other than training asked for a GPU: {others}"


def test_shards_and_ensembles_were_submitted_in_groups(slurm_run):
    output, jobs = slurm_run["output"], slurm_run["jobs"]
    n_shards = finished(output, "automated_shard")
    shard_groups = submissions(jobs, "rule_automated_shards_")
    alone = submissions(jobs, "rule_automated_shard_")
    assert not alone, f"{len(alone)} of {n_shards} shard jobs were submitted on their own (Slurm ids {sorted(alone)})"
    assert 1 <= len(shard_groups) < n_shards, f"{n_shards} shard jobs in {len(shard_groups)} sbatch submissions"
    assert finished(output, "ensemble") == slurm_run["n_ensembles"] > 1
    alone = submissions(jobs, "rule_ensemble_")
    assert not alone, f"ensemble jobs were submitted on their own (Slurm ids {sorted(alone)})"
    assert len(submissions(jobs, "rule_ensembles_")) == 1, "the ensembles did not run as one group job"


def test_cluster_jobs_leave_their_mlflow_runs_to_the_local_summary(slurm_run):
    """No job inside Slurm opened the SQLite store: each left its run in metrics.json, and the local
    train_summary logged every one of them once."""
    import json

    import pandas as pd
    from mlflow.tracking import MlflowClient

    workdir, results = slurm_run["workdir"], slurm_run["results"]
    runs = pd.read_csv(workdir / results / "train" / "runs.csv")
    checks = sorted((workdir / results / "train" / "checks").glob("*/*/fold*/metrics.json"))
    jobs = [json.loads(path.read_text()) for path in [*(workdir / results / "train").glob("*/*/fold*/metrics.json"),
                                                      *checks]]
    assert len(jobs) == len(runs) + len(checks) and checks
    assert all(job["mlflow_pending"] and job["mlflow_run_id"] is None for job in jobs)
    assert runs["mlflow_run_id"].notna().all() and runs["mlflow_error"].isna().all()
    assert not submissions(slurm_run["jobs"], "rule_train_summary"), "train_summary must run locally"
    client = MlflowClient(f"sqlite:///{workdir / 'results' / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(merged_config()["run_name"])
    logged = client.search_runs([experiment.experiment_id], "tags.`crowdskin.record` != ''", max_results=1000)
    assert len(logged) == len(jobs)  # one run per job: none lost, none twice
    assert set(runs["mlflow_run_id"]) <= {run.info.run_id for run in logged}

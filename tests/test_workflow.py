"""The workflow as a user drives it: the DAG, the embedded default, re-runs."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from workflow_runner import snakemake

pytestmark = [pytest.mark.slow]


def test_dry_run_lists_acquisition_and_ingestion(tmp_path):
    out = snakemake(tmp_path, "-n", "results/data/images.parquet", "results/data/download_report.csv").stdout
    for rule in ("synthesize", "ingest", "download_report"):
        assert f"rule {rule}:" in out or f"\n{rule} " in out, rule


def test_default_ingest_runs_offline_and_second_run_does_nothing(tmp_path):
    targets = ["results/data/annotations.parquet", "results/data/download_report.csv"]
    snakemake(tmp_path, *targets)
    assert (tmp_path / "results/data/mturk_assignments.parquet").stat().st_size > 0
    again = snakemake(tmp_path, "-n", *targets)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_unknown_config_key_stops_the_run(tmp_path):
    result = snakemake(tmp_path, "-n", "--config", "synthetic={'n_imgs': 3}", check=False)
    assert result.returncode != 0
    assert "n_imgs" in result.stdout + result.stderr


def test_paper_dry_run_lists_the_full_grid_with_gpu_resources(tmp_path, repo):
    """3 backbones x 5 folds x 13 tasks, each asking for a GPU, before any data exists."""
    result = snakemake(tmp_path, "-n", "--configfile", str(repo / "config/paper.yaml"))
    out = result.stdout + result.stderr
    jobs = re.split(r"^\[\w{3} \w{3} .*\d{4}\]$", out, flags=re.M)  # each job starts with its time stamp
    train_jobs = [job for job in jobs if re.search(r"^\s*(localrule|rule) train_job(_without_model)?:", job, re.M)]
    assert len(train_jobs) == 13 * 3 * 5
    assert all(re.search(r"resources:.*\bgpu=1\b", job) for job in train_jobs)
    wildcards = {re.search(r"wildcards: (.*)", job).group(1) for job in train_jobs}
    assert len(wildcards) == len(train_jobs)
    # the default config's simulated spammers are not carried into a real-data config
    assert "crowd_spammer_detection" not in out


def test_default_workflow_trains_a_multitask_job_tracked_in_mlflow(tmp_path):
    """The default DAG from nothing to one multi-task job on automated targets, through every stage."""
    from mlflow.tracking import MlflowClient

    job = "results/train/multitask-automated-asymmetry/vgg16/fold0"
    snakemake(tmp_path, f"{job}/metrics.json", "results/analysis/label_correlation.csv",
              "results/crowd/spammer_detection.csv")
    automated = pd.read_parquet(tmp_path / "results/annotations/automated.parquet")
    images = pd.read_parquet(tmp_path / "results/data/images.parquet")
    assert set(automated["image_id"]) == set(images["image_id"]) and automated["status"].notna().all()
    targets = pd.read_parquet(tmp_path / "results/crowd/targets.parquet")
    assert {"student", "crowd", "automated"} <= set(targets["source"])

    metrics = json.loads((tmp_path / job / "metrics.json").read_text())
    predictions = pd.read_parquet(tmp_path / job / "predictions.parquet")
    assert set(predictions["split"]) == {"train", "val", "test"}
    experiment = json.loads((tmp_path / "results/train/mlflow_experiment.json").read_text())
    run = MlflowClient(experiment["tracking_uri"]).get_run(metrics["mlflow_run_id"])
    assert run.data.params["task"] == "multitask-automated-asymmetry" and run.data.params["source"] == "automated"
    assert run.data.tags["backbone"] == "vgg16" and "test_auc" in run.data.metrics

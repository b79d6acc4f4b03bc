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


SMALL_GRID = """
split: {n_folds: 2}
train:
  backbones: [vgg16]
  multitask: {sources: [automated], features: [asymmetry]}
  random_control: false
  crowdsim: {enabled: false}
"""


def test_default_workflow_through_a_small_grid_tracked_in_mlflow(tmp_path):
    """The default DAG from nothing to the training summary, every stage's rules on the way, with a
    grid cut to baseline + one multi-task task on automated targets, VGG16, two folds."""
    from mlflow.tracking import MlflowClient

    (tmp_path / "small.yaml").write_text(SMALL_GRID)
    snakemake(tmp_path, "results/train/summary.csv", "results/analysis/label_correlation.csv",
              "results/analysis/disagreement_auc.csv", "results/crowd/spammer_detection.csv",
              "--configfile", str(tmp_path / "small.yaml"))
    automated = pd.read_parquet(tmp_path / "results/annotations/automated.parquet")
    images = pd.read_parquet(tmp_path / "results/data/images.parquet")
    assert set(automated["image_id"]) == set(images["image_id"]) and automated["status"].notna().all()
    targets = pd.read_parquet(tmp_path / "results/crowd/targets.parquet")
    assert {"student", "crowd", "automated"} <= set(targets["source"])
    assert len(pd.read_csv(tmp_path / "results/analysis/disagreement_auc.csv")) > 0

    runs = pd.read_csv(tmp_path / "results/train/runs.csv")
    assert sorted(zip(runs["task"], runs["fold"])) == [("baseline", 0), ("baseline", 1),
                                                       ("multitask-automated-asymmetry", 0),
                                                       ("multitask-automated-asymmetry", 1)]
    summary = pd.read_csv(tmp_path / "results/train/summary.csv")
    assert set(summary["task"]) == {"baseline", "multitask-automated-asymmetry"}

    job = tmp_path / "results/train/multitask-automated-asymmetry/vgg16/fold0"
    metrics = json.loads((job / "metrics.json").read_text())
    assert set(pd.read_parquet(job / "predictions.parquet")["split"]) == {"train", "val", "test"}
    experiment = json.loads((tmp_path / "results/train/mlflow_experiment.json").read_text())
    client = MlflowClient(experiment["tracking_uri"])
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.data.params["task"] == "multitask-automated-asymmetry" and run.data.params["source"] == "automated"
    assert run.data.tags["backbone"] == "vgg16" and "test_auc" in run.data.metrics
    assert runs["mlflow_run_id"].notna().all()
    assert len(client.search_runs([experiment["experiment_id"]])) == len(runs)

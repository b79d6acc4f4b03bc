"""The workflow as a user drives it: the DAG, the embedded default, re-runs."""

from __future__ import annotations

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

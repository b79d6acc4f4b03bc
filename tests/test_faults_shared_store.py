"""Two users, one store: two working directories with the same run_name log into one SQLite MLflow
store (the cluster case, where the store sits on a shared filesystem). Each must keep all its runs:
the second's evaluation may not supersede, re-parent or overwrite the first's.

Two whole runs of a cut-down test config to the MLflow comparisons (about two minutes together), so
`make test` skips it and `make test-faults` runs it.
"""

from __future__ import annotations

import pandas as pd
import pytest

from workflow_runner import REPO, fault_test, snakemake

pytestmark = [pytest.mark.slow, fault_test]
TEST_CONFIG = REPO / ".test" / "config.yaml"
# The test config cut to what evaluation logs: the baseline and one multi-task task, two folds.
SMALL = """\
train:
  backbone_checks: []
  multihead: {sources: []}
  disagreement: {sources: []}
  annotators: {votes: {enabled: false}, scores: {sources: []}}
  crowdsim: {enabled: false}
explain: {enabled: false}
evaluate: {ensembles: {}}
"""
TARGET = "results/test/scores/mlflow_runs.csv"


def test_two_working_directories_sharing_one_store_keep_all_their_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    from crowdskin.train.tracking import NAMESPACE_TAG

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    small = tmp_path / "small.yaml"
    small.write_text(SMALL + f"mlflow: {{tracking_uri: '{uri}'}}\n")
    client = MlflowClient(tracking_uri=uri)

    def run(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        workdir = tmp_path / name
        workdir.mkdir()
        snakemake(workdir, TARGET, "--configfile", str(TEST_CONFIG), str(small))
        folds = pd.read_csv(workdir / "results/test/train/runs.csv")
        parents = pd.read_csv(workdir / TARGET)
        return folds, parents

    def tags(run_ids) -> dict[str, dict[str, str]]:
        return {run_id: dict(client.get_run(run_id).data.tags) for run_id in run_ids}

    first_folds, first_parents = run("first")
    first_runs = [*first_folds["mlflow_run_id"], *first_parents["run_id"]]
    before = tags(first_runs)
    second_folds, second_parents = run("second")

    assert len(first_folds) == len(second_folds) == 4  # two tasks x two folds each
    assert not set(first_runs) & {*second_folds["mlflow_run_id"], *second_parents["run_id"]}
    after = tags(first_runs)
    for run_id in first_runs:  # the second evaluation left every run of the first as it was
        assert after[run_id] == before[run_id], run_id
        assert after[run_id][NAMESPACE_TAG] == str(tmp_path / "first")
        assert after[run_id].get("crowdskin.superseded") != "true"
    first_parent_ids = set(first_parents["run_id"])
    for run_id in first_folds["mlflow_run_id"]:
        assert after[run_id]["mlflow.parentRunId"] in first_parent_ids
    for run_id, run_tags in tags(second_folds["mlflow_run_id"]).items():
        assert run_tags[NAMESPACE_TAG] == str(tmp_path / "second")
        assert run_tags["mlflow.parentRunId"] in set(second_parents["run_id"]), run_id
    # Both directories' runs are in the one experiment, none superseded.
    experiment_id = client.get_run(first_runs[0]).info.experiment_id
    assert client.get_run(second_folds["mlflow_run_id"].iloc[0]).info.experiment_id == experiment_id
    stored = client.search_runs([experiment_id], max_results=1000)
    fold_ids = {*first_folds["mlflow_run_id"], *second_folds["mlflow_run_id"]}
    assert fold_ids <= {run.info.run_id for run in stored}
    assert not [run.info.run_id for run in stored if run.data.tags.get("crowdskin.superseded") == "true"]

"""The shortcut trap end to end (.test/shortcut.yaml, config/shortcut.yaml cut down): the marked
synthetic data, the marker-free reference, every explained model scored on clean and trap images,
the truth checks and the report's page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workflow_runner import REPO, snakemake

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CONFIG = REPO / ".test" / "shortcut.yaml"
RUN = "results/test-shortcut"


@pytest.fixture(scope="module")
def trap_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("shortcut")
    snakemake(workdir, "--configfile", str(CONFIG))
    return workdir


def test_the_trap_scores_every_model_on_clean_and_trap_images(trap_run):
    truth = pd.read_csv(trap_run / "resources/synthetic/test-shortcut/synthetic/truth/shortcut.csv")
    scores = pd.read_csv(trap_run / f"{RUN}/scores/shortcut.csv").set_index("model")
    assert {"baseline", "multitask-automated-border", "clean-reference", "baseline-and-border"} <= set(scores.index)
    assert (scores["lesions"] == len(truth)).all()  # two folds test every lesion once
    for column in ("auc_clean", "auc_trap", "auc_drop"):
        assert scores[column].between(-1, 1).all(), column
    assert scores["auc_drop"].to_numpy() == pytest.approx((scores["auc_clean"] - scores["auc_trap"]).to_numpy())
    # the reference never saw a marker: its tested images are the clean ones
    reference = pd.read_parquet(trap_run / f"{RUN}/explain/clean-reference/smallcnn/relevance.parquet")
    assert reference["score"].to_numpy() == pytest.approx(reference["score_clean"].to_numpy(), abs=1e-5)
    baseline = pd.read_parquet(trap_run / f"{RUN}/explain/baseline/smallcnn/relevance.parquet")
    marked = baseline.merge(truth[["image_id", "marker_train", "marker_trap"]], on="image_id", suffixes=("", "_truth"))
    assert (marked["marker_trap"] == marked["marker_trap_truth"].astype(bool)).all()
    # where the tested image shows no marker, it is the clean rendering: the same score
    plain = marked[~marked["marker_train_truth"].astype(bool)]
    assert plain["score"].to_numpy() == pytest.approx(plain["score_clean"].to_numpy(), abs=1e-5)
    comparisons = pd.read_csv(trap_run / f"{RUN}/scores/shortcut_comparisons.csv")
    assert set(comparisons["reference"]) == {"baseline"} and "baseline" not in set(comparisons["model"])


def test_the_trap_has_its_truth_checks_and_report_page(trap_run):
    summary = pd.read_csv(trap_run / f"{RUN}/truth/summary.csv")
    trap = summary[summary["table"] == "shortcut"]
    judged = trap[trap["floor"].notna()]
    assert len(trap) == 4 and len(judged) == 3 and set(judged["status"]) <= {"pass", "fail"}
    assert np.isfinite(trap["value"]).all()
    assert (summary["table"] == "relevance").sum() == 1
    page = (trap_run / f"{RUN}/report/explanations.html").read_text()
    assert "The shortcut trap: AUC on clean and trap images" in page and "clean-reference" in page

"""The shipped example of a study that is not ENHANCE (config/example-study.yaml): its files in the
generic formats ingest to exactly what the same synthetic data gives in ENHANCE's formats (the known
truth), and the workflow runs it from those files alone to the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from crowdskin.config import load_config
from crowdskin.example_study import FEATURE_NAMES, enhance_version, study_id, write_example_study
from crowdskin.ingest import ingest_all
from workflow_runner import REPO, deploy_test, snakemake

EXAMPLE_CONFIG = REPO / "config" / "example-study.yaml"
TEST_OVERLAY = REPO / ".test" / "example-study.yaml"
STUDY_FEATURES = sorted(FEATURE_NAMES.values())


def _example_ingest(root: Path) -> dict:
    config = load_config(REPO / "config" / "config.yaml", EXAMPLE_CONFIG)["ingest"]
    return {**config, "root": str(root)}


def test_the_example_study_ingests_to_the_synthetic_truth_under_its_own_names(tmp_path: Path) -> None:
    written = write_example_study(tmp_path / "study", n_images=40, image_size=32, seed=7)
    assert sorted({Path(w).parts[0] for w in written}) == ["annotations.csv", "lesions.csv", "photos"]
    assert {p.suffix for p in (tmp_path / "study/photos").rglob("*.*")} == {".png", ".PNG"}
    result = ingest_all(_example_ingest(tmp_path / "study"), tmp_path / "no-raw-folder")
    truth = enhance_version(tmp_path / "enhance", n_images=40, image_size=32, seed=7)
    assert result.quarantine.empty, result.quarantine.to_string()

    images = result.images.set_index("image_id")
    expected = truth.images.assign(image_id=truth.images["image_id"].map(study_id)).set_index("image_id")
    assert list(images.index) == list(expected.index)
    assert images["abnormal"].tolist() == expected["abnormal"].tolist()
    assert images["diagnosis"].tolist() == expected["abnormal"].map({1: "malignant", 0: "benign"}).tolist()
    assert images["image_path"].map(lambda p: Path(p).is_file()).all()
    patients = images["group_id"]
    assert patients.notna().all() and 1 <= patients.value_counts().max() <= 3 and patients.nunique() < len(images)

    key = ["image_id", "source", "feature", "annotator_group", "annotator"]
    got = result.annotations[[*key, "value"]].sort_values(key).reset_index(drop=True)
    annotations = truth.annotations
    want = (annotations.assign(image_id=annotations["image_id"].map(study_id),
                               feature=annotations["feature"].map(FEATURE_NAMES))
            [[*key, "value"]].sort_values(key).reset_index(drop=True))
    assert len(want) > 500
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


@pytest.mark.slow
@deploy_test
def test_a_config_of_generic_inputs_alone_runs_to_the_report(tmp_path: Path) -> None:
    write_example_study(tmp_path / "resources/example-study", n_images=60)
    snakemake(tmp_path, "--configfile", str(EXAMPLE_CONFIG), str(TEST_OVERLAY))
    snakemake(tmp_path, "--report", "report.html", "--configfile", str(EXAMPLE_CONFIG), str(TEST_OVERLAY))
    run = tmp_path / "results/example-study"
    assert (tmp_path / "report.html").stat().st_size > 100_000

    counts = pd.read_csv(run / "data/ingest_counts.csv")
    assert sorted(Path(f).name for f in counts["origin_file"]) == ["annotations.csv", "lesions.csv"]
    assert (counts["n_in"] == counts["n_kept"]).all()
    targets = pd.read_parquet(run / "crowd/targets.parquet")
    assert sorted(targets["feature"].unique()) == STUDY_FEATURES

    # The grouped folds keep each patient's lesions in one test fold.
    folds = pd.read_parquet(run / "splits/folds.parquet")
    images = pd.read_parquet(run / "data/images.parquet")[["image_id", "group_id"]]
    tested = folds[folds["split"] == "test"].merge(images, on="image_id")
    assert tested.groupby("group_id")["fold"].nunique().max() == 1

    summary = pd.read_csv(run / "scores/auc_summary.csv")
    grid = {f"multitask-{source}-{feature}" for source in ("student", "crowd") for feature in STUDY_FEATURES}
    assert grid | {"baseline", "disagreement-student", "annotators-student-lobes"} <= set(summary["model"])
    assert summary["mean_auc"].notna().all()
    # The study's tables are the ingest rule's inputs: a changed score re-runs ingestion and what
    # depends on it, and nothing else is stale.
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--configfile", str(EXAMPLE_CONFIG),
                                             str(TEST_OVERLAY)).stdout
    scores = tmp_path / "resources/example-study/annotations.csv"
    scores.write_text(scores.read_text().replace(",lobes,3\n", ",lobes,4\n", 1))
    planned = snakemake(tmp_path, "-n", "--configfile", str(EXAMPLE_CONFIG), str(TEST_OVERLAY)).stdout
    assert "rule ingest:" in planned
    assert "reason: Updated input files: resources/example-study/annotations.csv" in planned
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert config["synthetic"] == {"enabled": False} and not config.get("sources") and not config.get("url_lists")


def test_the_command_writes_the_example_study(tmp_path: Path) -> None:
    from crowdskin.cli import main

    assert main(["example-study", str(tmp_path / "study"), "--n-images", "20"]) == 0
    assert len(pd.read_csv(tmp_path / "study/lesions.csv")) == 20
    assert len(list((tmp_path / "study/photos").rglob("*.*"))) == 20

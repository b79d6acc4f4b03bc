"""The workflow as a user drives it: the small test config run to its end, what each change re-runs, two
configs side by side. The DAG-only checks are in tests/test_workflow_dag.py."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crowdskin.config import section
from workflow_runner import REPO, snakemake

pytestmark = [pytest.mark.slow]
TEST_CONFIG = REPO / ".test" / "config.yaml"


# `make test` runs pytest-xdist with --dist loadfile, so this module's tests share one worker and
# build the finished run once.
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The default DAG run to its end once with the small test config (.test/config.yaml: baseline +
    one multi-task task on automated targets, the small CNN, two folds, a VGG16 check job): every stage's
    rules on the way."""
    workdir = tmp_path_factory.mktemp("finished")
    snakemake(workdir, "--configfile", str(TEST_CONFIG))
    return workdir


def planned_jobs(workdir, change: str = "") -> dict[str, int]:
    """`snakemake -n` over the whole DAG with `change` (YAML) layered on the run's config, as a user
    edits a config file: the jobs it would run, by rule."""
    (workdir / "change.yaml").write_text(change or "{}")
    out = snakemake(workdir, "-n", "--configfile", str(TEST_CONFIG), str(workdir / "change.yaml")).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table, re.M))
    return {rule: int(n) for rule, n in counts.items() if rule != "all"}


def test_default_workflow_through_a_small_grid_tracked_in_mlflow(finished_run):
    from mlflow.tracking import MlflowClient

    assert (finished_run / "results/test/data/mturk_assignments.parquet").stat().st_size > 0  # offline, synthetic
    automated = pd.read_parquet(finished_run / "results/test/annotations/automated.parquet")
    images = pd.read_parquet(finished_run / "results/test/data/images.parquet")
    assert set(automated["image_id"]) == set(images["image_id"]) and automated["status"].notna().all()
    targets = pd.read_parquet(finished_run / "results/test/crowd/targets.parquet")
    assert {"student", "crowd", "automated"} <= set(targets["source"])
    disagreement = pd.read_csv(finished_run / "results/test/analysis/disagreement_auc.csv")
    assert set(disagreement["experiment"]) == {"student_group01", "crowd_synthetic"}
    assert disagreement["auc_mean"].between(0, 1).all() and (disagreement["n_lesions"] > 0).all()
    detection = pd.read_csv(finished_run / "results/test/crowd/spammer_detection.csv")
    assert set(detection["rule"]) == {"impossible_triplet", "confidence", "time_on_task", "approval_rate", "all rules"}
    workers = pd.read_csv(finished_run / "resources/synthetic/test/synthetic/truth/workers.csv")
    spammers = int(workers["is_spammer"].astype(str).str.lower().isin(["1", "true"]).sum())
    by_worker = detection[detection["level"] == "worker"].iloc[0]
    assert 0 < by_worker["true_positives"] + by_worker["false_negatives"] <= spammers
    assert detection[["precision", "recall"]].stack().dropna().between(0, 1).all()
    # the truth checks: one summary row per check (the AUC target once per backbone of the baseline);
    # the 1-step training is not judged against its target here
    from crowdskin.truth import FLOORS

    summary = pd.read_csv(finished_run / "results/test/truth/summary.csv")
    auc = pd.read_csv(finished_run / "results/test/truth/auc.csv")
    assert set(auc["model"]) == {"baseline", "multitask-automated-asymmetry"}
    baseline_backbones = auc.loc[auc["model"] == "baseline", "backbone"]
    assert len(baseline_backbones) >= 1 and baseline_backbones.is_unique
    # and the spread heads' checks once each, without a value: disagreement-student's on the small CNN
    # (the test config draws no ambiguous lesion, so no correlation is defined) and the crowd's (no
    # crowd disagreement model in the test config)
    spread = summary[summary["table"] == "spread_heads"].set_index("row")
    assert list(spread.index) == ["source=student, head=mean, backbone=smallcnn", "source=crowd, head=mean"]
    assert (spread["status"] == "no value").all()
    heads = pd.read_csv(finished_run / "results/test/truth/spread_heads.csv")
    assert set(heads["head"]) == {"mean", "asymmetry_std", "color_std"} and (heads["n"] == 60).all()
    # per backbone: the baseline's AUC and its relevance mass in the lesion (no shortcut trap here), and
    # the five checks of the models that learn each annotator
    assert len(summary) == len([f for f in FLOORS if f.per is None]) + 7 * len(baseline_backbones) + 2
    learned = summary[summary["table"] == "annotators"]
    assert len(learned) == 5 and set(learned["status"]) <= {"pass", "fail", "no value"}
    workers = pd.read_csv(finished_run / "results/test/truth/annotator_workers.csv")
    assert len(workers) == 12 and workers["learned_reliability"].between(0, 1).all()
    assert summary["check"].is_unique and set(summary["status"]) <= {"pass", "fail", "no value", "no floor"}
    reliability = pd.read_csv(finished_run / "results/test/crowd/worker_reliability.csv")
    assert reliability["reliability"].between(0, 1).all() and (reliability["n_votes"] > 0).all()
    correlation = pd.read_csv(finished_run / "results/test/analysis/label_correlation.csv")
    assert set(correlation["feature"]) == {"asymmetry", "border", "color"} and correlation["r"].between(-1, 1).all()

    runs = pd.read_csv(finished_run / "results/test/train/runs.csv")
    tasks = ["annotators-student-border", "baseline", "crowdsim-annotators", "crowdsim-incremental",
             "crowdsim-retrain", "crowdsim-soft", "disagreement-student", "multihead-automated",
             "multitask-automated-asymmetry"]
    assert sorted(zip(runs["task"], runs["fold"], strict=True)) == [(task, fold) for task in tasks for fold in (0, 1)]
    summary = pd.read_csv(finished_run / "results/test/train/summary.csv")
    assert set(summary["task"]) == set(tasks)
    # the expert-only tasks leave out every image shown to the crowd, whatever the funnel kept
    pool = set(pd.read_parquet(finished_run / "results/test/crowd/crowd_pool.parquet")["image_id"])
    labelled = set(pd.read_parquet(finished_run / "results/test/crowd/crowd_labels.parquet")["image_id"])
    assert labelled <= pool
    baseline = pd.read_parquet(finished_run / "results/test/train/baseline/smallcnn/fold0/predictions.parquet")
    assert not set(baseline.loc[baseline["split"] != "test", "image_id"]) & pool

    # the study backbone the grid does not train gets one tiny job, outside the scores
    check = finished_run / "results/test/train/checks/baseline/vgg16/fold0"
    assert json.loads((check / "metrics.json").read_text())["epochs"] == 1
    assert set(pd.read_parquet(check / "predictions.parquet")["split"]) == {"train", "val", "test"}

    job = finished_run / "results/test/train/multitask-automated-asymmetry/smallcnn/fold0"
    metrics = json.loads((job / "metrics.json").read_text())
    assert set(pd.read_parquet(job / "predictions.parquet")["split"]) == {"train", "val", "test"}
    experiment = json.loads((finished_run / "results/test/train/mlflow_experiment.json").read_text())
    client = MlflowClient(experiment["tracking_uri"])
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.data.params["task"] == "multitask-automated-asymmetry" and run.data.params["source"] == "automated"
    assert run.data.tags["backbone"] == "smallcnn" and "test_auc" in run.data.metrics
    # execution settings are tags, never parameters; the default config's jobs ran in the warm worker
    assert not {"threads", "runtime", "mem_mb", "gpus", "warm_worker", "weights_file"} & set(run.data.params)
    assert run.data.tags["execution.weights_file"] == ""  # train.weights: none
    assert run.data.tags["execution.threads"] == "1"
    assert "steps_per_execution" not in run.data.params
    assert run.data.tags["execution.steps_per_execution"] == str(section("execution")["train"]["steps_per_execution"])
    # every job ran in the warm worker: one that fell back to its own process is tagged "false"
    assert {client.get_run(run_id).data.tags["execution.warm_worker"] for run_id in runs["mlflow_run_id"]} == {"true"}
    assert "serving on" in (finished_run / "results/test/logs/train_worker.log").read_text()
    assert runs["mlflow_run_id"].notna().all()
    # a crowd layer's job: what it learned of each worker, as a file and in its MLflow run
    layer = finished_run / "results/test/train/crowdsim-annotators/smallcnn/fold0"
    learned = pd.read_parquet(layer / "annotators.parquet")
    assert learned["annotator"].str.startswith("ASYN").all() and learned["reliability"].between(0, 1).all()
    assert np.allclose(learned[["confusion_00", "confusion_01"]].sum(axis=1), 1.0)
    layer_run = client.get_run(json.loads((layer / "metrics.json").read_text())["mlflow_run_id"])
    assert "annotators_mean_reliability" in layer_run.data.metrics
    assert "annotators.parquet" in {a.path for a in client.list_artifacts(layer_run.info.run_id)}
    # one run per job, besides the evaluation's parent (one per task) and ensemble runs
    logged = client.search_runs([experiment["experiment_id"]])
    job_runs = [r for r in logged if r.data.tags.get("crowdskin.role") in (None, "check")]
    assert len(job_runs) == len(runs) + 1  # and the VGG16 check job's, tagged as such
    checks = [r for r in job_runs if r.data.tags.get("crowdskin.check") == "true"]
    assert [(r.data.tags["backbone"], r.data.tags["kind"], r.data.tags["crowdskin.role"]) for r in checks] == [
        ("vgg16", "check", "check")]
    assert checks[0].data.params["kind"] == "baseline"  # what the check trained stays a parameter
    assert sorted(r.data.tags["crowdskin.role"] for r in logged if "crowdskin.role" in r.data.tags) == sorted(
        ["check", "checks", "ensemble"] + ["parent"] * len(tasks))


def cpu_signature() -> str:
    """This CPU's model name and instruction-set flags, hashed: the kernels TensorFlow's CPU build
    picks (oneDNN dispatches on them at run time) and so how float32 sums are rounded."""
    import hashlib

    fields = {}
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("model name", "flags") and key not in fields:
            fields[key] = " ".join(sorted(value.split()))
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


# Another CPU rounds float32 sums in another order: the same job's scores then differ in their last
# units in the last place (up to 3.2e-7 relative, seen between two x86-64 CPU models), while any
# change of a kind's examples, heads, losses or starts moves them by orders of magnitude more.
OTHER_CPU_RTOL = 1e-6


def test_existing_kinds_reproduce_their_predictions_exactly(finished_run):
    """tests/data/reference_predictions.csv: every prediction of the small test config's baseline,
    multi-task and two CROWDSIM tasks as the workflow wrote them before task kinds were plug-ins
    (commit ae925ac, `snakemake results/test/train/summary.csv --configfile .test/config.yaml`,
    deterministic default). The same lesions, splits, labels and scores: the kinds moved onto their
    base class, the examples, heads, losses and starts unchanged. Re-written since on the CPU that
    tests/data/reference_predictions.cpu.json names, from this test's own run: once when
    prediction began to run whole batches (9 of the 408 scores changed, each in its fold's last,
    partial batch, by at most 6e-8; training to the bit, the class weights having moved from the
    loss into the data in the same change), and once for another CPU (every score within 3.2e-7
    relative of the previous file, every other column equal). On that CPU the scores must be equal
    to the bit; on any other, within OTHER_CPU_RTOL, every other column still equal."""
    reference = pd.read_csv(REPO / "tests/data/reference_predictions.csv", dtype={"image_id": str})
    written_on = json.loads((REPO / "tests/data/reference_predictions.cpu.json").read_text())["cpu_signature"]
    same_cpu = cpu_signature() == written_on
    columns = ["image_id", "fold", "split", "score", "label", "label_source"]
    for (task, fold), expected in reference.groupby(["task", "fold"]):
        written = pd.read_parquet(finished_run / f"results/test/train/{task}/smallcnn/fold{fold}/predictions.parquet")
        written, expected = written[columns].reset_index(drop=True), expected[columns].reset_index(drop=True)
        where = f"{task}/fold{fold} ({'the reference' if same_cpu else 'another'} CPU)"
        if same_cpu:
            pd.testing.assert_frame_equal(written, expected, check_dtype=False, check_exact=True, obj=where)
        else:
            exact = [c for c in columns if c != "score"]
            pd.testing.assert_frame_equal(written[exact], expected[exact], check_dtype=False, check_exact=True,
                                          obj=where)
            np.testing.assert_allclose(written["score"], expected["score"], rtol=OTHER_CPU_RTOL, atol=0, err_msg=where)


def test_every_annotation_head_is_measured_in_its_job_mlflow_and_the_scores(finished_run):
    """A model with several targets has one head per target: its job's metrics.json and MLflow run
    and the scores' head table carry each head's test MAE and Spearman correlation."""
    from mlflow.tracking import MlflowClient

    job = finished_run / "results/test/train/disagreement-student/smallcnn/fold0"
    heads = ["asymmetry", "asymmetry_std", "color", "color_std"]
    metrics = json.loads((job / "metrics.json").read_text())
    assert list(metrics["heads"]) == heads
    predictions = pd.read_parquet(job / "predictions.parquet")
    for head in heads:
        test = predictions[(predictions["split"] == "test") & predictions[f"available_{head}"]]
        assert metrics["heads"][head]["test_n"] == len(test) > 0
        assert metrics["heads"][head]["test_mae"] == pytest.approx(
            (test[f"prediction_{head}"] - test[f"target_{head}"]).abs().mean())
    # a spread needs two annotators: it exists on fewer lesions than the consensus, never more
    assert predictions["available_asymmetry_std"].sum() <= predictions["available_asymmetry"].sum()
    experiment = json.loads((finished_run / "results/test/train/mlflow_experiment.json").read_text())
    run = MlflowClient(experiment["tracking_uri"]).get_run(metrics["mlflow_run_id"])
    assert run.data.metrics["test_asymmetry_std_mae"] == pytest.approx(metrics["heads"]["asymmetry_std"]["test_mae"])
    assert run.data.params["heads"] == ",".join(heads) and run.data.tags["kind"] == "disagreement"

    table = pd.read_csv(finished_run / "results/test/scores/head_metrics.csv")
    assert sorted(zip(table["model"], table["head"], strict=True)) == sorted(
        [("disagreement-student", h) for h in heads] + [("multihead-automated", "asymmetry"),
                                                         ("multihead-automated", "border"),
                                                         ("multitask-automated-asymmetry", "asymmetry")])
    assert (table["n_folds"] == 2).all() and table["pooled_mae"].notna().all()
    scores = json.loads((finished_run / "results/test/scores/metrics.json").read_text())
    assert set(scores["smallcnn"]["multihead-automated"]["heads"]) == {"asymmetry", "border"}


def test_execution_settings_re_run_nothing(finished_run):
    """Every execution setting changed at once: a rule that took any of them as a param would re-run
    (Snakemake re-runs a job when any of its params differs), so none does."""
    assert planned_jobs(finished_run) == {}  # a second run of a finished DAG has nothing to do
    every_execution_setting = """
execution:
  automated: {threads: 1}
  train: {runtime: 999, mem_mb: 64000, threads: 2, gpus: 1, slurm_extra: '--constraint=a100',
          warm_worker: false, weights_dir: /elsewhere, steps_per_execution: 7,
          compile_cache: /elsewhere/compile}
"""
    assert planned_jobs(finished_run, every_execution_setting) == {}
    assert planned_jobs(finished_run, "execution: {train: {gpus: 1, jobs_per_gpu: 3}}") == {}
    assert planned_jobs(finished_run, "execution: {train: {compile_cache: null}}") == {}


# What each group of crowd settings re-runs in the small grid: the rules that read it, and what
# depends on their outputs (the multi-task jobs read the targets; the baselines do not). Every crowd
# table is a page of the report; the funnel is also a figure.
# The truth checks read the crowd stage's tables and the scores: truth_data and truth_auc feed the
# summary, which feeds the report.
REPORT = {"report_tables"}
TRUTH_DATA = {"truth_data", "truth_summary"} | REPORT
TRUTH_AUC = {"truth_auc", "truth_summary"} | REPORT
# Each figure is also a page of the report (report_figures), re-made where a figure is.
# The explanation gallery ranks the models it shows by their pooled AUC: it follows the scores.
EVALUATION = {"ensemble", "scores", "figures", "gallery", "operating_characteristics", "report_figures",
              "mlflow_comparisons", "explain_gallery"} | TRUTH_AUC
TRAINING = {"train_job_without_model", "train_summary"} | EVALUATION
# The disagreement model reads the targets: its spread heads' truth check follows.
TARGETS = {"crowd_targets", "crowd_analysis", "truth_spread_heads"} | TRAINING | TRUTH_DATA
# The crowd labels reach the crowdsim jobs only: the expert-only tasks leave out the crowd's whole
# candidate pool, which no filter setting changes.
# The votes table follows the funnel's verdicts and the reliability model's settings; the crowd layer
# learns from it (and reads the labels for its pool), and its truth check and summary follow.
VOTES = {"crowd_votes", "train_annotator_job_without_model", "annotators_summary", "truth_annotators"}
LABELS = {"crowd_labels"} | (TRAINING - {"ensemble"}) | TRUTH_DATA | VOTES  # no ensemble holds a crowdsim task
MTURK = {"crowd_mturk_filter", "crowd_spammer_detection", "figures", "report_figures"} | LABELS
DISAGREEMENT = {"crowd_disagreement"} | REPORT
ANNOTATIONS = TARGETS | DISAGREEMENT  # use_automated: every rule that reads the annotations
# Every crowd setting once. A change may hold settings whose sets are disjoint: if one of them did
# not reach its rule, that rule would be missing from the plan, so each is still tested on its own
# (and with one Snakemake call per change instead of one per setting).
CROWD_CHANGES = {
    "crowd: {multi_group: first, mturk: {min_approval_rate: 0.99}, disagreement: {folds: 5}}":
        TARGETS | MTURK | DISAGREEMENT,
    "crowd: {target_features: [asymmetry, border], mturk: {rules: [confidence]}, disagreement: {experiments: []}}":
        TARGETS | MTURK | DISAGREEMENT,
    "crowd: {mturk: {excluded_confidence: [neutral]}}": MTURK,
    "crowd: {mturk: {first_hit_min_s: 30}}": MTURK,
    "crowd: {mturk: {later_hit_min_s: 5}}": MTURK,
    "crowd: {mturk: {later_hit_max_s: 300}}": MTURK,
    "crowd: {mturk: {reject_no_history: true}}": MTURK,
    "crowd: {use_automated: false, labels: {method: glad}}": ANNOTATIONS | LABELS,
    "crowd: {labels: {n_iter: 50}}": LABELS,
}


def test_each_crowd_setting_re_runs_the_rules_that_read_it_and_what_depends_on_them(finished_run):
    planned = {change: planned_jobs(finished_run, change) for change in CROWD_CHANGES}
    assert {change: set(jobs) for change, jobs in planned.items()} == CROWD_CHANGES
    for change, jobs in planned.items():
        # the six jobs of the three kinds that read targets (multitask, multihead, disagreement) where
        # the targets change, the six crowdsim jobs where the labels do; never a baseline (the rule
        # train_job, which keeps the model crowdsim fine-tunes)
        expected = 6 * ("crowd_targets" in jobs) + 6 * ("crowd_labels" in jobs)
        assert (jobs["train_job_without_model"], "train_job" in jobs) == (expected, False), change
        # the crowd layer's two jobs where the votes change; the students' annotator head reads neither
        assert jobs.get("train_annotator_job_without_model", 0) == 2 * ("crowd_votes" in jobs), change


def test_a_training_hyper_parameter_re_trains_and_nothing_before(finished_run):
    evaluation = {"ensemble": 1, "scores": 1, "figures": 1, "gallery": 1, "operating_characteristics": 1,
                  "mlflow_comparisons": 1, "truth_auc": 1, "truth_summary": 1, "report_tables": 1,
                  "report_figures": 1, "explain_gallery": 1}
    # the explanation of the saved models (the baselines), its scores and its truth check
    explained = {"explain": 1, "explain_scores": 1, "truth_explain": 1}
    # every job trains with the learning rate, the backbone check too (it is not scored)
    learned = {"annotators_summary": 1, "truth_annotators": 1}
    assert planned_jobs(finished_run, "train: {learning_rate: 0.002}") == {
        "train_job": 2, "train_job_without_model": 12, "train_annotator_job_without_model": 4,
        "train_backbone_check": 1, "train_summary": 1, "truth_spread_heads": 1} | evaluation | explained | learned
    # The loss weights reach the models with annotation or annotator heads only (multitask, multihead,
    # disagreement: 6 jobs; the two annotator models: 4), and a new task (the randomized control, two
    # folds) trains only itself: 6 + 2 jobs; a baseline or a crowdsim job re-trained would make it more.
    assert planned_jobs(finished_run, "train: {loss_weights: {target: 0.3}, random_control: true}") == {
        "train_job_without_model": 8, "train_annotator_job_without_model": 4, "train_summary": 1,
        "truth_spread_heads": 1} | evaluation | learned
    # the soft label's setting reaches crowdsim-soft alone (in no ensemble)
    assert planned_jobs(finished_run, "train: {crowdsim: {soft: {label: posterior}}}") == {
        "train_job_without_model": 2, "train_summary": 1} | {k: v for k, v in evaluation.items() if k != "ensemble"}


def test_a_backbone_added_trains_only_its_own_jobs(finished_run):
    """Its 18 jobs (9 tasks x 2 folds; the baselines keep their model for crowdsim), the user's
    ensemble (one job for all its backbones), each task averaged over the two backbones, and what
    reads the predictions (the explanation of the VGG16 baseline with it); never a small-CNN job, nor
    the VGG16 check, whose settings are unchanged."""
    assert planned_jobs(finished_run, "train: {backbones: [smallcnn, vgg16]}") == {
        "train_job": 2, "train_job_without_model": 12, "train_annotator_job_without_model": 4, "train_summary": 1,
        "ensemble": 1, "ensemble_over_backbones": 9, "truth_spread_heads": 1, "annotators_summary": 1,
        "truth_annotators": 1, "scores": 1, "figures": 1, "gallery": 1,
        "operating_characteristics": 1, "mlflow_comparisons": 1, "truth_auc": 1, "truth_summary": 1,
        "report_tables": 1, "report_figures": 1, "explain": 1, "explain_scores": 1, "truth_explain": 1,
        "explain_gallery": 1}


def test_evaluation_settings_re_run_the_evaluation_only(finished_run):
    after_scores = {"scores": 1, "figures": 1, "gallery": 1, "operating_characteristics": 1, "mlflow_comparisons": 1,
                    "truth_auc": 1, "truth_summary": 1, "report_tables": 1, "report_figures": 1, "explain_gallery": 1}
    # the relevance mass's intervals use the same bootstrap; the maps are not re-made
    assert planned_jobs(finished_run, "evaluate: {bootstrap: {resamples: 300}}") == after_scores | {
        "explain_scores": 1, "truth_explain": 1}
    # a new ensemble is one job; the existing one is not re-run
    assert planned_jobs(finished_run, "evaluate: {ensembles: {baseline-and-asymmetry: [baseline, "
                                      "multitask-automated-asymmetry], only-baseline: [baseline]}}") == {
        "ensemble": 1} | after_scores


def test_ensembles_scores_figures_and_mlflow_comparisons(finished_run):
    from mlflow.tracking import MlflowClient

    job = "smallcnn/fold1/predictions.parquet"
    ensemble = pd.read_parquet(finished_run / f"results/test/ensembles/baseline-and-asymmetry/{job}")
    members = [pd.read_parquet(finished_run / f"results/test/train/{task}/{job}")
               for task in ("baseline", "multitask-automated-asymmetry")]
    tests = [m[m["split"] == "test"].set_index("image_id")["score"] for m in members]
    expected = (tests[0] + tests[1].reindex(tests[0].index)) / 2
    assert ensemble.set_index("image_id")["score"].reindex(expected.index).to_numpy() == pytest.approx(
        expected.to_numpy())

    scores = finished_run / "results/test/scores"
    folds = pd.read_csv(scores / "auc_folds.csv")
    assert sorted(set(folds["model"])) == ["annotators-student-border", "baseline", "baseline-and-asymmetry",
                                           "crowdsim-annotators", "crowdsim-incremental", "crowdsim-retrain",
                                           "crowdsim-soft", "disagreement-student", "multihead-automated",
                                           "multitask-automated-asymmetry"]
    assert len(folds) == 10 * 2 and (folds["n_test"] > 0).all()
    table = pd.read_csv(scores / "auc_table.csv")
    assert list(table["model"]) == ["baseline", "multitask-automated-asymmetry", "multihead-automated",
                                    "disagreement-student", "annotators-student-border", "baseline-and-asymmetry",
                                    "crowdsim-retrain", "crowdsim-soft", "crowdsim-incremental",
                                    "crowdsim-annotators"]
    assert "smallcnn_pooled_auc" in table.columns
    comparisons = pd.read_csv(scores / "comparisons.csv")
    assert sorted(zip(comparisons["model"], comparisons["reference"], strict=True)) == [
        ("annotators-student-border", "baseline"), ("baseline-and-asymmetry", "baseline"),
        ("crowdsim-annotators", "baseline"), ("crowdsim-annotators", "crowdsim-retrain"),
        ("crowdsim-incremental", "baseline"),
        ("crowdsim-retrain", "baseline"), ("crowdsim-retrain", "crowdsim-incremental"),
        ("crowdsim-soft", "baseline"), ("crowdsim-soft", "crowdsim-retrain"),
        ("disagreement-student", "baseline"), ("multihead-automated", "baseline"),
        ("multitask-automated-asymmetry", "baseline")]
    assert (comparisons["scope"] == "pooled").all()
    metrics = json.loads((scores / "metrics.json").read_text())
    assert set(metrics["smallcnn"]) == set(folds["model"])
    assert set(pd.read_csv(scores / "roc.csv").columns) == {"model", "backbone", "fpr", "tpr"}
    for figure in ("roc", "forest", "fold_auc", "training_curves", "mturk_funnel", "gallery_smallcnn"):
        assert (scores / f"figures/{figure}.png").stat().st_size > 5000, figure
    with Image.open(scores / "figures/gallery_smallcnn.png") as gallery:
        assert gallery.width <= 1000

    experiment = json.loads((finished_run / "results/test/train/mlflow_experiment.json").read_text())
    client = MlflowClient(experiment["tracking_uri"])
    logged = pd.read_csv(scores / "mlflow_runs.csv").set_index(["role", "model"])
    parent = client.get_run(logged.loc[("parent", "baseline"), "run_id"])
    assert parent.data.tags["backbone"] == "smallcnn" and "pooled_test_auc" in parent.data.metrics
    children = client.search_runs([experiment["experiment_id"]],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    runs = pd.read_csv(finished_run / "results/test/train/runs.csv")
    assert sorted(r.info.run_id for r in children) == sorted(runs.loc[runs["task"] == "baseline", "mlflow_run_id"])
    ensemble_run = client.get_run(logged.loc[("ensemble", "baseline-and-asymmetry"), "run_id"])
    assert ensemble_run.data.tags["kind"] == "ensemble"
    assert set(ensemble_run.data.tags["crowdskin.member_runs"].split(",")) == {
        parent.info.run_id, logged.loc[("parent", "multitask-automated-asymmetry"), "run_id"]}
    assert_mlflow_view_ranks_models(client, experiment["experiment_id"], logged)


def assert_mlflow_view_ranks_models(client, experiment_id: str, logged: pd.DataFrame) -> None:
    """What a reader of the MLflow UI sees: the experiment explains itself, model and ensemble runs carry
    only aggregate scores, and no filter by backbone or kind takes the check run for a model."""
    from crowdskin.train.tracking import EXPERIMENT_KIND, HEADLINE_METRIC

    tags = client.get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == EXPERIMENT_KIND and HEADLINE_METRIC in tags["mlflow.note.content"]
    models = [client.get_run(run_id) for run_id in logged.loc[["parent", "ensemble"], "run_id"]]
    for run in models:
        assert "test_auc" not in run.data.metrics, run.info.run_name
        assert HEADLINE_METRIC in run.data.metrics, run.info.run_name
        for name in run.data.metrics:  # one value per metric, none per fold
            assert {m.step for m in client.get_metric_history(run.info.run_id, name)} == {0}, (run.info.run_name, name)
    assert client.search_runs([experiment_id], "tags.backbone = 'vgg16' and tags.kind != 'check'") == []
    ranked = client.search_runs([experiment_id], f"metrics.{HEADLINE_METRIC} >= 0 and tags.backbone = 'smallcnn'",
                                order_by=[f"metrics.{HEADLINE_METRIC} DESC"])
    assert sorted(r.info.run_id for r in ranked) == sorted(r.info.run_id for r in models)
    checks_id = logged.loc[("checks", "checks"), "run_id"]
    (check,) = client.search_runs([experiment_id], "tags.`crowdskin.check` = 'true'")
    assert check.data.tags["mlflow.parentRunId"] == checks_id
    assert "backbone" not in client.get_run(checks_id).data.tags


def test_report_shows_every_table_and_figure(finished_run):
    snakemake(finished_run, "--report", "results/test/report.html", "--configfile", str(TEST_CONFIG))
    report = (finished_run / "results/test/report.html").read_text()
    for page in ("data", "automated", "crowd", "annotators", "training", "auc_table", "comparisons", "auc_folds",
                 "config", "truth"):
        assert f"{page}.html" in report, page
    # each figure is a page of its own, under its caption
    for figure in ("roc", "forest", "fold_auc", "training_curves", "mturk_funnel", "raincloud", "source_agreement",
                   "gallery_smallcnn"):
        assert f"{figure}.html" in report, figure
    for category in ("1. Summary", "2. Data", "3. Annotations", "4. Crowd", "5. Training", "6. Models and ensembles",
                     "7. Operating points, lesions, explanations", "8. Truth checks", "9. Configuration"):
        assert category in report, category
    # the report embeds each page; decoded, the tables are there as a reader sees them
    pages = {name: base64.b64decode(data).decode() for name, data in
             re.findall(r"data:text/html;charset=utf8;filename=([\w.]+);base64,([A-Za-z0-9+/=]+)", report)}
    assert {"data.html", "auc_table.html", "comparisons.html", "auc_folds.html", "config.html"} <= set(pages)
    assert "baseline-and-asymmetry" in pages["auc_table.html"] and " ± " in pages["auc_table.html"]
    assert "multitask-automated-asymmetry" in pages["comparisons.html"] and "Holm p" in pages["comparisons.html"]
    assert "adjusted 95 % CI" in pages["comparisons.html"]
    assert "MTurk filtering funnel" in pages["crowd.html"] and "Quarantined rows" in pages["data.html"]
    assert "confusion matrices" in pages["annotators.html"] and "ASYN0000" in pages["annotators.html"]
    assert "Checks against the synthetic truth" in pages["truth.html"] and "checks:" in pages["truth.html"]
    assert "Dawid–Skene worker reliability" in pages["truth.html"]
    assert "baseline-and-asymmetry" in pages["config.html"] and "\nexecution:" not in pages["config.html"]


def test_the_report_reads_in_a_browser(finished_run, tmp_path):
    """As a reader sees it in headless Chromium at 1600 x 1100: the landing page gives the headline
    figures, and on every page of every category no image is shown narrower than it was drawn and no
    table column runs past the window's right edge. Screenshots: tmp_path (the README's come from
    `tests/report_browser.py results/default/report.html docs/report`)."""
    from report_browser import chromium, walk

    if chromium() is None:
        pytest.skip("chromium not installed (apt-get install chromium; `make browser` does it, CI runs it)")
    report_html = finished_run / "results/test/report.html"
    if not report_html.exists():
        snakemake(finished_run, "--report", "results/test/report.html", "--configfile", str(TEST_CONFIG))
    seen = walk(report_html, tmp_path / "screens")

    summary = pd.read_csv(finished_run / "results/test/scores/auc_summary.csv")
    baseline = summary[(summary["model"] == "baseline")].iloc[0]
    landing = seen.landing_text
    assert "the answer first" in landing and "Baseline pooled out-of-fold AUC" in landing
    assert f"{baseline['pooled_auc']:.3f}" in landing, "the baseline's pooled AUC is the headline"
    assert "lesions tested" in landing and "abnormal" in landing
    assert "Truth checks (synthetic data)" in landing and "Where to look next" in landing
    # navigation in the workflow's order, with readable names
    assert seen.categories == sorted(seen.categories) and seen.categories[0] == "1. Summary"
    assert seen.categories[-1] == "9. Configuration"
    assert not [item.label for item in seen.items if "/" in item.label or item.label.endswith((".png", ".html"))]

    shrunk = [f"{item.category} / {item.label}: {natural} px shown at {shown:.0f} px"
              for item in seen.items for natural, shown in item.images if shown < natural - 1]
    assert not shrunk, shrunk
    overflowing = [f"{item.category} / {item.label}: {cell}" for item in seen.items for cell in item.overflowing]
    assert not overflowing, overflowing
    assert sum(bool(item.images) for item in seen.items) >= 7, "every figure was seen"
    assert all(item.screenshot.stat().st_size > 0 for item in seen.items)
    truth = next(item for item in seen.items if item.label == "Checks against the synthetic truth")
    assert "checks:" in truth.text
    data = next(item for item in seen.items if item.label == "Rows read, kept and quarantined")
    quarantined = len(pd.read_parquet(finished_run / "results/test/data/quarantine.parquet"))
    after = data.text.split("Quarantined rows by reason", 1)[1].split("Download report", 1)[0]
    assert ("None." in after) == (quarantined == 0), "an empty table says so"


def test_a_changed_mask_re_runs_its_shard_only(finished_run):
    """Fails if shards depend on more than their own masks and images (every shard would re-run)."""
    plan = pd.read_parquet(finished_run / "results/test/annotations/automated_shards/plan.parquet")
    assert sorted(set(plan["shard"])) == [0, 1]
    mask = finished_run / plan.loc[plan["shard"] == 1, "mask_path"].iloc[0]
    original, times = mask.read_bytes(), mask.stat()
    # Snakemake compares checksums as well as times: the content must change, not only the mtime
    mask.write_bytes(original + b"changed")
    os.utime(mask, (times.st_atime, times.st_mtime + 60))
    try:
        jobs = planned_jobs(finished_run)
    finally:
        mask.write_bytes(original)
        os.utime(mask, ns=(times.st_atime_ns, times.st_mtime_ns))
    # one shard, then what reads the automated scores: the targets and analyses, the six jobs that
    # read the targets table (multitask, multihead, disagreement; never a baseline or a crowdsim
    # job), evaluation, report
    assert jobs.pop("automated_shard") == 1 and jobs.pop("automated_collect") == 1
    assert set(jobs) == ANNOTATIONS and jobs["train_job_without_model"] == 6
    assert planned_jobs(finished_run) == {}


def test_the_saved_models_are_explained(finished_run):
    """Every test lesion of each fold has its map and its relevance mass; the scores, the truth check
    and the report's page follow."""
    explain = finished_run / "results/test/explain/baseline/smallcnn"
    relevance = pd.read_parquet(explain / "relevance.parquet")
    maps = np.load(explain / "maps.npz")
    for fold in (0, 1):
        tested = relevance[relevance["fold"] == fold]
        job = finished_run / f"results/test/train/baseline/smallcnn/fold{fold}"
        predictions = pd.read_parquet(job / "predictions.parquet")
        assert sorted(tested["image_id"]) == sorted(predictions.loc[predictions["split"] == "test", "image_id"])
        assert list(maps[f"fold{fold}_ids"]) == list(tested["image_id"])
        assert maps[f"fold{fold}_maps"].shape == (len(tested), 8, 8)  # smallcnn's block3 at 32 px
    assert relevance["relevance_lesion"].dropna().between(0, 1).all()
    assert relevance["has_mask"].all()  # every synthetic lesion has its mask
    summary = pd.read_csv(finished_run / "results/test/scores/relevance.csv")
    assert list(summary["model"]) == ["baseline"]
    assert summary["lesions"].iloc[0] == relevance["relevance_lesion"].count()
    truth = pd.read_csv(finished_run / "results/test/truth/summary.csv")
    assert truth["check"].str.contains("relevance mass in the lesion").any()
    page = (finished_run / "results/test/report/explanations.html").read_text()
    assert "Relevance mass in the lesion" in page


def test_operating_characteristics_tables_and_figures(finished_run):
    """Calibration, operating points chosen on validation, per-fold ROC and the heads' scatter exist for
    every scored model, ensembles included, and their counts add up to the test sets."""
    scores = finished_run / "results/test/scores"
    folds = pd.read_csv(scores / "auc_folds.csv")
    operating = pd.read_csv(scores / "operating_point.csv", keep_default_na=False, na_values=[""])
    per_fold = operating[operating["scope"] != "pooled"].set_index(["model", "scope"])
    for row in folds.itertuples(index=False):
        point = per_fold.loc[(row.model, f"fold{row.fold}")]
        assert point["tp"] + point["fn"] + point["fp"] + point["tn"] == row.n_test, (row.model, row.fold)
        assert point["tp"] + point["fn"] == row.n_abnormal
        assert point["n_val"] > 0, row.model  # the ensemble too: its members' validation scores
    assert set(pd.read_csv(scores / "brier.csv")["model"]) == set(folds["model"])
    assert set(pd.read_csv(scores / "calibration.csv")["model"]) == set(folds["model"])
    assert {"fpr", "tpr", "fold"} <= set(pd.read_csv(scores / "fold_roc.csv").columns)
    heads = pd.read_csv(scores / "head_points.csv")
    assert {"multitask-automated-asymmetry", "multihead-automated", "disagreement-student"} <= set(heads["model"])
    for figure in ("calibration", "operating_point", "fold_roc", "heads_scatter"):
        assert (scores / f"figures/{figure}.png").stat().st_size > 5000, figure


def documented_outputs() -> list[tuple[str, re.Pattern[str], bool]]:
    """docs/output.md's table rows: (path pattern, its regex, whether the test run must produce it).
    `{name}` is one part of a path, `**` anything below a folder; a row with an **Only with**
    condition appears only with other configs than .test/config.yaml."""
    rows = []
    for line in (REPO / "docs" / "output.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"`(results|resources)/[^`]+`", cells[0]):
            continue
        pattern = cells[0].strip("`")
        regex = "".join(
            "[^/]+" if part.startswith("{") else ".+" if part == "**" else re.escape(part)
            for part in re.split(r"(\{[^}]+\}|\*\*)", pattern)
        )
        rows.append((pattern, re.compile(regex), not cells[3]))
    return rows


def test_every_output_is_documented(finished_run):
    """docs/output.md against the finished run: every file under results/ and resources/ matches a
    documented path, and every path documented without an **Only with** condition matches a file."""
    documented = documented_outputs()
    assert len(documented) > 50
    files = sorted(
        path.relative_to(finished_run).as_posix()
        for top in ("results", "resources")
        for path in (finished_run / top).rglob("*")
        if path.is_file()
    )
    undocumented = [f for f in files if not any(regex.fullmatch(f) for _, regex, _ in documented)]
    assert not undocumented, "files a run writes that docs/output.md does not list:\n  " + "\n  ".join(undocumented)
    unmatched = [p for p, regex, produced in documented if produced and not any(regex.fullmatch(f) for f in files)]
    assert not unmatched, (
        "docs/output.md paths that the test run (.test/config.yaml) did not write (give them an "
        "**Only with** condition if another config writes them):\n  " + "\n  ".join(unmatched)
    )

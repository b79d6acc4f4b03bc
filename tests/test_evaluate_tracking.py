"""MLflow comparisons: parent runs over the fold runs, ensemble runs, the checks run, and a second call that
updates (replacing the runs an older version left with per-fold metrics)."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from crowdskin.evaluate.tracking import BASELINE_METRICS, SUMMARY_METRICS, log_comparisons
from crowdskin.train.tracking import CHECK_TAGS, EXPERIMENT_KIND, HEADLINE_METRIC, ensure_experiment, log_run

pytest.importorskip("mlflow")

EXPERIMENT = "crowdskin-test"
NAMESPACE = "/scratch/crowdskin-test"  # the working directory whose runs these are
TASKS = {"baseline": ("baseline", None), "multitask-crowd-asymmetry": ("multitask", "crowd"),
         "multitask-crowd-border": ("multitask", "crowd"), "random": ("random", None)}
BACKBONES = ["vgg16", "resnet50"]
FOLDS = [0, 1]
MEMBERS = {"ensemble-crowd": ["multitask-crowd-asymmetry", "multitask-crowd-border"], "baseline": ["baseline"]}
ENSEMBLES = [("ensemble-crowd", "crowd", b) for b in [*BACKBONES, "all"]] + [("baseline", None, "all"),
                                                                              ("mystery", None, "vgg16")]
NO_RUN = ("random", "resnet50", 1)  # its job's MLflow logging failed: no run id in runs.csv
RETRAINED = ("baseline", "vgg16", 1)
OLD_PARENT = ("baseline", "resnet50")  # an older version's parent: per-fold test_auc, the old metric names
AGGREGATES = set(SUMMARY_METRICS) | set(BASELINE_METRICS)


def fold_auc(model: str, backbone: str, fold: int) -> float:
    if (model, backbone, fold) == ("random", "vgg16", 1):
        return float("nan")  # a test fold with one class only
    base = 0.6 + 0.01 * sorted(TASKS).index(model) if model in TASKS else 0.7
    return round(base + 0.1 * (backbone == "resnet50") + 0.05 * (backbone == "all") + 0.02 * fold, 4)


def tables(runs_ids: dict[tuple[str, str, int], str | None], *, baseline_vgg16_mean: float = 0.75):
    """auc_summary, runs.csv and comparisons in the formats of results/scores and results/train."""
    table, runs, comparisons = [], [], []
    models = [(t, kind, source, b) for t, (kind, source) in TASKS.items() for b in BACKBONES]
    models += [(name, "ensemble", source, b) for name, source, b in ENSEMBLES]
    for model, kind, source, backbone in models:
        aucs = [fold_auc(model, backbone, k) for k in FOLDS]
        mean = float(pd.Series(aucs).mean(skipna=False))
        if (model, backbone) == ("baseline", "vgg16"):
            mean = baseline_vgg16_mean
        table.append({"model": model, "kind": kind, "source": source, "backbone": backbone, "n_folds": len(FOLDS),
                      "mean_auc": mean, "sd_auc": 0.01, "pooled_auc": mean + 0.001, "pooled_ci_low": mean - 0.1,
                      "pooled_ci_high": mean + 0.1, "n_pooled": 80, "note": ""})
        if model != "baseline" and backbone != "all":
            for scope, reference in (("pooled", "baseline"), ("fold0", "baseline"), ("pooled", "random")):
                comparisons.append({"model": model, "reference": reference, "backbone": backbone, "scope": scope,
                                    "difference": 0.02 if scope == "pooled" else 0.5, "ci_low": 0.001,
                                    "ci_high": 0.04, "delong_z": 1.0, "delong_p": 0.3, "holm_p": 0.6,
                                    "adjusted_ci_low": -0.01, "adjusted_ci_high": 0.05, "note": ""})
    for (task, backbone, fold), run_id in runs_ids.items():
        runs.append({"task": task, "backbone": backbone, "fold": fold, "test_auc": 0.7, "val_auc": 0.7, "epochs": 2,
                     "split_hash": "abc", "train_seconds": 1.0, "job_seconds": 2.0, "mlflow_run_id": run_id,
                     "mlflow_error": None if run_id else "ConnectionError: store down", "warnings": ""})
    return pd.DataFrame(table), pd.DataFrame(runs), pd.DataFrame(comparisons)


def fold_run(uri: str, task: str, backbone: str, fold: int, **extra_tags: str) -> str:
    kind, source = TASKS.get(task, ("crowdsim-retrain", "crowd"))
    tags = {"task": task, "kind": kind, "backbone": backbone, "fold": str(fold), "source": str(source),
            "feature": "None", **extra_tags}
    return log_run(uri, EXPERIMENT, run_name=f"{task}/{backbone}/fold{fold}", params={"task": task, "fold": fold},
                   tags=tags, history=[{"epoch": 1, "loss": 0.5}], metrics={"test_auc": 0.7}, artifacts=[])


def snapshot(client, experiment_id: str) -> dict[str, SimpleNamespace]:
    runs = client.search_runs([experiment_id], max_results=1000)
    return {r.info.run_id: SimpleNamespace(name=r.info.run_name, tags=r.data.tags, metrics=r.data.metrics,
                                           params=r.data.params, status=r.info.status) for r in runs}


def find(store: dict[str, SimpleNamespace], role: str, task: str, backbone: str) -> tuple[str, SimpleNamespace]:
    found = [(i, r) for i, r in store.items() if (r.tags.get("crowdskin.role"), r.tags.get("task"),
                                                   r.tags.get("backbone")) == (role, task, backbone)]
    assert len(found) == 1, f"{len(found)} {role} runs for {task}/{backbone}"
    return found[0]


def old_parent(client, experiment_id: str, task: str, backbone: str) -> str:
    """A parent as an older version logged it: the fold runs' AUCs as `test_auc` at step k, old names."""
    from mlflow.entities import Metric

    run = client.create_run(experiment_id, run_name=f"{task}/{backbone}",
                            tags={"crowdskin.role": "parent", "task": task, "backbone": backbone})
    metrics = [Metric("test_auc", 0.9 + k / 100, 0, k) for k in FOLDS] + [Metric("mean_test_auc", 0.9, 0, 0),
                                                                         Metric("pooled_ci_low", 0.8, 0, 0)]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def call(uri: str, ids: dict, **kwargs) -> pd.DataFrame:
    auc_table, runs, comparisons = tables(ids, **kwargs)
    return log_comparisons(uri, EXPERIMENT, auc_table=auc_table, runs=runs, members=MEMBERS, comparisons=comparisons,
                           namespace=NAMESPACE)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store after a first and a second call (the second after re-training one job); snapshots of each."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    experiment_id = ensure_experiment(uri, EXPERIMENT)
    client = MlflowClient(tracking_uri=uri)
    ids: dict[tuple[str, str, int], str | None] = {
        (t, b, k): None if (t, b, k) == NO_RUN else fold_run(uri, t, b, k) for t in TASKS for b in BACKBONES
        for k in FOLDS}
    ids[("crowdsim-retrain", "vgg16", 0)] = fold_run(uri, "crowdsim-retrain", "vgg16", 0)  # not in the tables
    old_parent_id = old_parent(client, experiment_id, *OLD_PARENT)
    for fold in FOLDS:  # nested under it by the older version
        client.set_tag(ids[(*OLD_PARENT, fold)], "mlflow.parentRunId", old_parent_id)
    # backbone check runs: one as this version's jobs log it, one of an older version (kind baseline, no role)
    checks = {"new": fold_run(uri, "baseline", "vgg16", 0, **{"crowdskin.check": "true", **CHECK_TAGS}),
              "old": fold_run(uri, "baseline", "resnet50", 0, **{"crowdskin.check": "true"})}
    first = call(uri, ids)
    after_first = snapshot(client, experiment_id)
    history_first = client.get_metric_history(find(after_first, "parent", "baseline", "vgg16")[0], "fold_mean_test_auc")

    retrained = dict(ids)
    retrained[RETRAINED] = fold_run(uri, *RETRAINED)
    before_second = snapshot(client, experiment_id)
    time.sleep(0.01)  # a strictly newer timestamp, as any real second call has
    started = time.perf_counter()
    second = call(uri, retrained, baseline_vgg16_mean=0.81)
    seconds = time.perf_counter() - started
    after_second = snapshot(client, experiment_id)
    parent_id = find(after_second, "parent", "baseline", "vgg16")[0]
    return SimpleNamespace(uri=uri, client=client, experiment_id=experiment_id, ids=ids, retrained=retrained,
                           first=first, second=second, after_first=after_first, before_second=before_second,
                           after_second=after_second, history_first=history_first, second_seconds=seconds,
                           old_parent_id=old_parent_id, checks=checks,
                           mean_history=client.get_metric_history(parent_id, "fold_mean_test_auc"))


def test_a_parent_per_task_and_backbone_with_the_tables_scores(store):
    runs = store.after_first
    parents = [r for r in runs.values() if r.tags.get("crowdskin.role") == "parent"]
    assert len(parents) == len(TASKS) * len(BACKBONES) + 1  # + crowdsim-retrain, found in runs.csv only
    run_id, parent = find(runs, "parent", "multitask-crowd-asymmetry", "resnet50")
    assert parent.name == "multitask-crowd-asymmetry/resnet50" and parent.status == "FINISHED"
    assert {k: parent.tags[k] for k in ("task", "kind", "backbone", "source")} == {
        "task": "multitask-crowd-asymmetry", "kind": "multitask", "backbone": "resnet50", "source": "crowd"}
    mean = (fold_auc("multitask-crowd-asymmetry", "resnet50", 0) + fold_auc("multitask-crowd-asymmetry",
                                                                            "resnet50", 1)) / 2
    assert parent.metrics["fold_mean_test_auc"] == pytest.approx(mean)
    assert parent.metrics["pooled_test_auc"] == pytest.approx(mean + 0.001)
    assert parent.metrics["pooled_test_auc_ci_low"] == pytest.approx(mean - 0.1)
    assert parent.metrics["pooled_test_auc_ci_high"] == pytest.approx(mean + 0.1)
    assert parent.metrics["fold_sd_test_auc"] == pytest.approx(0.01) and parent.metrics["n_folds"] == 2
    # the pooled comparison against the baseline, never a per-fold one or one against another reference;
    # its interval the adjusted one, which agrees with Holm's p (the unadjusted one clears 0 here)
    assert {k: parent.metrics[k] for k in BASELINE_METRICS} == pytest.approx(
        {"pooled_test_auc_minus_baseline": 0.02, "pooled_test_auc_minus_baseline_ci_low": -0.01,
         "pooled_test_auc_minus_baseline_ci_high": 0.05, "delong_p_vs_baseline": 0.3, "holm_p_vs_baseline": 0.6})
    assert not set(BASELINE_METRICS) & set(find(runs, "parent", "baseline", "resnet50")[1].metrics)
    only_runs = find(runs, "parent", "crowdsim-retrain", "vgg16")[1]
    assert only_runs.tags["kind"] == "crowdsim-retrain" and not only_runs.metrics


def test_parents_and_ensembles_carry_no_per_fold_metric(store):
    """The runs table shows a metric's latest step: a per-fold metric on a model's run would rank it by one
    fold. Every metric of a parent or ensemble run is an aggregate, logged at step 0 only."""
    for snapshot_ in (store.after_first, store.after_second):
        models = {i: r for i, r in snapshot_.items() if r.tags.get("crowdskin.role") in ("parent", "ensemble")}
        assert len(models) == len(TASKS) * len(BACKBONES) + 1 + len(ENSEMBLES)
        for run_id, run in models.items():
            assert set(run.metrics) <= AGGREGATES, run.name
            for name in run.metrics:
                assert {m.step for m in store.client.get_metric_history(run_id, name)} == {0}, (run.name, name)
    assert next(iter(SUMMARY_METRICS)) == HEADLINE_METRIC


def test_an_older_versions_parent_is_replaced_with_its_children_nested_under_the_new_one(store):
    from mlflow.entities import ViewType

    run_id, parent = find(store.after_first, "parent", *OLD_PARENT)
    assert run_id != store.old_parent_id and "test_auc" not in parent.metrics and parent.status == "FINISHED"
    assert store.client.get_run(store.old_parent_id).info.lifecycle_stage == "deleted"
    assert store.old_parent_id not in store.after_first  # a search of active runs no longer finds it
    assert [r.info.run_id for r in store.client.search_runs([store.experiment_id], "tags.task = 'baseline' and "
                                                            "tags.backbone = 'resnet50'", ViewType.DELETED_ONLY)] == [
        store.old_parent_id]
    for fold in FOLDS:
        assert store.after_first[store.ids[(*OLD_PARENT, fold)]].tags["mlflow.parentRunId"] == run_id
    assert find(store.after_second, "parent", *OLD_PARENT)[0] == run_id  # replaced once, then updated
    over_all = find(store.after_first, "ensemble", "baseline", "all")[1]
    assert run_id in over_all.tags["crowdskin.member_runs"].split(",")


def test_check_runs_are_tagged_and_nested_apart_from_the_models(store):
    from mlflow.tracking import MlflowClient

    runs = store.after_first
    checks_id, checks = find_checks(runs)
    assert checks.name == "checks" and checks.tags["kind"] == "check" and not checks.metrics
    assert not {"task", "backbone"} & set(checks.tags)
    for run_id in store.checks.values():
        assert runs[run_id].tags["mlflow.parentRunId"] == checks_id
        assert (runs[run_id].tags["kind"], runs[run_id].tags["crowdskin.role"]) == ("check", "check")
    row = store.first.set_index("role").loc["checks"]
    assert (row["run_id"], row["n_children"]) == (checks_id, 2)
    assert find_checks(store.after_second)[0] == checks_id
    client = MlflowClient(tracking_uri=store.uri)
    for backbone in ("vgg16", "resnet50"):
        found = client.search_runs([store.experiment_id], f"tags.backbone = '{backbone}' and tags.kind != 'check'",
                                   max_results=1000)
        assert found and not {r.info.run_id for r in found} & {*store.checks.values(), checks_id}
        # the README's ranking query: the models and ensembles of one backbone, nothing else
        ranked = client.search_runs([store.experiment_id], f"metrics.{HEADLINE_METRIC} >= 0 and "
                                    f"tags.backbone = '{backbone}'", max_results=1000)
        assert {r.data.tags["crowdskin.role"] for r in ranked} == {"parent", "ensemble"}


def find_checks(runs: dict[str, SimpleNamespace]) -> tuple[str, SimpleNamespace]:
    found = [(i, r) for i, r in runs.items() if r.tags.get("crowdskin.role") == "checks"]
    assert len(found) == 1
    return found[0]


def test_the_experiment_describes_itself_and_is_a_machine_learning_one(store, tmp_path):
    from mlflow.tracking import MlflowClient

    tags = store.client.get_experiment(store.experiment_id).tags
    assert tags["mlflow.experimentKind"] == EXPERIMENT_KIND == "custom_model_development"
    description = tags["mlflow.note.content"]
    assert HEADLINE_METRIC in description and "kind != 'check'" in description
    named = {name for name in AGGREGATES if name in description}  # the difference's interval by its suffix
    assert AGGREGATES - named == {"n_folds", f"{HEADLINE_METRIC}_minus_baseline_ci_low",
                                  f"{HEADLINE_METRIC}_minus_baseline_ci_high"}
    # an experiment of an older version gets them; a description the user wrote stays
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    plain = client.create_experiment("plain", tags={"mlflow.note.content": "mine"})
    client.create_experiment("bare")
    assert ensure_experiment(uri, "plain") == plain
    assert client.get_experiment(plain).tags == {"mlflow.note.content": "mine",
                                                 "mlflow.experimentKind": EXPERIMENT_KIND}
    bare = client.get_experiment(ensure_experiment(uri, "bare")).tags
    assert bare["mlflow.note.content"] == description and bare["mlflow.experimentKind"] == EXPERIMENT_KIND


def test_nan_scores_are_left_out(store):
    run_id, parent = find(store.after_first, "parent", "random", "vgg16")
    assert "fold_mean_test_auc" not in parent.metrics and "pooled_test_auc" not in parent.metrics
    assert parent.metrics["n_folds"] == 2 and parent.tags["source"] == "None"
    assert "test_auc" not in store.client.get_run(run_id).data.metrics


def test_every_fold_run_is_nested_under_its_parent(store):
    runs = store.after_first
    for (task, backbone, _fold), run_id in store.ids.items():
        if run_id is not None:
            assert runs[run_id].tags["mlflow.parentRunId"] == find(runs, "parent", task, backbone)[0]
    children = store.first.set_index(["role", "model", "backbone"])["n_children"]
    assert children[("parent", "random", "resnet50")] == 1  # fold 1 has no run id
    assert children[("parent", "baseline", "vgg16")] == 2 and children[("parent", "crowdsim-retrain", "vgg16")] == 1
    nested = [r for r in runs.values() if "mlflow.parentRunId" in r.tags and r.tags.get("crowdskin.role") != "check"]
    assert len(nested) == sum(run_id is not None for run_id in store.ids.values())


def test_ensemble_runs_name_their_members_parent_runs(store):
    runs = store.after_first
    parent = {(t, b): find(runs, "parent", t, b)[0] for t in TASKS for b in BACKBONES}
    asymmetry, border = MEMBERS["ensemble-crowd"]
    ensembles = [r for r in runs.values() if r.tags.get("crowdskin.role") == "ensemble"]
    assert len(ensembles) == len(ENSEMBLES)

    run_id, vgg16 = find(runs, "ensemble", "ensemble-crowd", "vgg16")
    assert vgg16.name == "ensemble-crowd/vgg16" and vgg16.tags["kind"] == "ensemble"
    assert vgg16.tags["source"] == "crowd" and vgg16.params["members"] == f"{asymmetry},{border}"
    assert vgg16.tags["crowdskin.member_runs"] == f"{parent[(asymmetry, 'vgg16')]},{parent[(border, 'vgg16')]}"
    assert vgg16.metrics["fold_mean_test_auc"] == pytest.approx(0.71)
    assert vgg16.metrics["pooled_test_auc_minus_baseline"] == pytest.approx(0.02) and "test_auc" not in vgg16.metrics

    over_all = find(runs, "ensemble", "ensemble-crowd", "all")[1]
    assert over_all.tags["crowdskin.member_runs"].split(",") == [parent[(m, b)] for m in (asymmetry, border)
                                                                 for b in BACKBONES]
    baseline_all = find(runs, "ensemble", "baseline", "all")[1]
    assert baseline_all.tags["crowdskin.member_runs"].split(",") == [parent[("baseline", b)] for b in BACKBONES]
    assert baseline_all.tags["kind"] == "ensemble" and baseline_all.metrics["fold_mean_test_auc"] == pytest.approx(
        (fold_auc("baseline", "all", 0) + fold_auc("baseline", "all", 1)) / 2)
    mystery = find(runs, "ensemble", "mystery", "vgg16")[1]  # not in the members mapping
    assert mystery.tags["crowdskin.member_runs"] == "" and "members" not in mystery.params
    members = store.first.set_index(["role", "model", "backbone"])["n_members"]
    assert members[("ensemble", "ensemble-crowd", "all")] == 4 and members[("ensemble", "mystery", "vgg16")] == 0


def test_a_second_call_updates_instead_of_adding(store):
    assert len(store.after_second) == len(store.before_second)  # the re-train's run was logged before both
    assert store.second["run_id"].tolist() == store.first["run_id"].tolist()
    assert store.first["created"].all() and not store.second["created"].any()
    parent = find(store.after_second, "parent", "baseline", "vgg16")[1]
    assert parent.metrics["fold_mean_test_auc"] == pytest.approx(0.81)
    assert [m.value for m in sorted(store.mean_history, key=lambda m: m.timestamp)] == pytest.approx([0.75, 0.81])
    assert len(store.history_first) == 1
    assert store.second_seconds < 10


def test_a_superseded_fold_run_leaves_its_parent(store):
    runs = store.after_second
    parent_id = find(runs, "parent", "baseline", "vgg16")[0]
    old, new = store.ids[RETRAINED], store.retrained[RETRAINED]
    assert store.after_first[old].tags["mlflow.parentRunId"] == parent_id
    assert "mlflow.parentRunId" not in runs[old].tags and runs[old].tags["crowdskin.superseded"] == "true"
    assert runs[new].tags["mlflow.parentRunId"] == parent_id and "crowdskin.superseded" not in runs[new].tags
    still = [i for key, i in store.ids.items() if i is not None and key != RETRAINED]
    assert all(runs[i].tags["mlflow.parentRunId"] == store.after_first[i].tags["mlflow.parentRunId"] for i in still)
    assert store.second.set_index(["role", "model", "backbone"])["n_children"][("parent", "baseline", "vgg16")] == 2


def test_fold_runs_of_another_experiment_are_left_alone(store):
    ours = store.ids[("baseline", "vgg16", 0)]  # a run of EXPERIMENT, not of "elsewhere"
    auc_table, runs, _ = tables({("baseline", "vgg16", 0): ours, ("baseline", "vgg16", 1): float("nan")})
    auc_table = auc_table.query("model == 'baseline' and backbone == 'vgg16'")
    result = log_comparisons(store.uri, "elsewhere", auc_table=auc_table, runs=runs, members={}, namespace=NAMESPACE)
    assert result[["role", "model", "backbone", "n_children"]].values.tolist() == [["parent", "baseline", "vgg16", 0]]
    assert result["run_id"].iloc[0] != find(store.after_second, "parent", "baseline", "vgg16")[0]
    assert store.client.get_run(ours).data.tags["mlflow.parentRunId"] == store.after_second[ours].tags[
        "mlflow.parentRunId"]


def test_the_wide_table_is_refused_before_the_store_is_touched(tmp_path):
    auc_table, runs, _ = tables({("baseline", "vgg16", 0): None})
    wide = auc_table.pivot(index="model", columns="backbone", values="mean_auc").reset_index()
    with pytest.raises(ValueError, match="auc_table lacks column"):
        log_comparisons(f"sqlite:///{tmp_path}/mlflow.db", EXPERIMENT, auc_table=wide, runs=runs, members={},
                        namespace=NAMESPACE)
    assert not (tmp_path / "mlflow.db").exists()


def test_the_module_imports_without_mlflow():
    code = "import sys, crowdskin.evaluate.tracking; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_two_working_directories_sharing_a_store_keep_their_own_runs(tmp_path):
    """The cluster case: two working directories, one store, the same run_name. Each evaluation finds,
    updates and supersedes only the runs of its own namespace; the other's stay as they were."""
    from mlflow.tracking import MlflowClient

    from crowdskin.train.tracking import NAMESPACE_TAG

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = ensure_experiment(uri, EXPERIMENT)
    client = MlflowClient(tracking_uri=uri)
    grid = [(t, b, k) for t in ("baseline", "multitask-crowd-asymmetry") for b in BACKBONES for k in FOLDS]
    namespaces = {"first": "/scratch/first", "second": "/scratch/second"}
    ids = {name: {key: fold_run(uri, *key, **{NAMESPACE_TAG: ns}) for key in grid} for name, ns in namespaces.items()}
    checks = {name: fold_run(uri, "baseline", "vgg16", 0,
                             **{"crowdskin.check": "true", NAMESPACE_TAG: ns, **CHECK_TAGS})
              for name, ns in namespaces.items()}

    def evaluate(name: str, runs_ids: dict) -> pd.DataFrame:
        auc_table, runs, comparisons = tables(runs_ids)
        auc_table = auc_table[auc_table["model"].isin(["baseline", "multitask-crowd-asymmetry"])
                              & auc_table["backbone"].isin(BACKBONES)]
        return log_comparisons(uri, EXPERIMENT, auc_table=auc_table, runs=runs, members={}, comparisons=comparisons,
                               namespace=namespaces[name])

    first = evaluate("first", ids["first"])
    after_first = snapshot(client, experiment_id)
    second = evaluate("second", ids["second"])
    after_second = snapshot(client, experiment_id)
    assert not set(first["run_id"]) & set(second["run_id"]) and second["created"].all()
    for name, logged in (("first", first), ("second", second)):
        for run_id in logged["run_id"]:  # every parent and the checks run names its namespace
            assert after_second[run_id].tags[NAMESPACE_TAG] == namespaces[name]
        parents = logged.set_index(["model", "backbone"])["run_id"]
        for (task, backbone, _fold), run_id in ids[name].items():
            assert after_second[run_id].tags["mlflow.parentRunId"] == parents[(task, backbone)]
            assert "crowdskin.superseded" not in after_second[run_id].tags
        assert after_second[checks[name]].tags["mlflow.parentRunId"] == logged.set_index("role")["run_id"]["checks"]
    for run_id in first["run_id"]:  # the second evaluation left the first's runs as they were
        assert after_second[run_id].tags == after_first[run_id].tags
        assert after_second[run_id].metrics == after_first[run_id].metrics

    # The first directory re-trains one job: only its own old fold run is superseded.
    retrained = dict(ids["first"])
    retrained[("baseline", "vgg16", 1)] = fold_run(uri, "baseline", "vgg16", 1, **{NAMESPACE_TAG: namespaces["first"]})
    again = evaluate("first", retrained)
    assert again["run_id"].tolist() == first["run_id"].tolist()
    after_retrain = snapshot(client, experiment_id)
    superseded = {i for i, r in after_retrain.items() if r.tags.get("crowdskin.superseded") == "true"}
    assert superseded == {ids["first"][("baseline", "vgg16", 1)]}
    for run_id in [*ids["second"].values(), checks["second"], *second["run_id"]]:
        assert after_retrain[run_id].tags == after_second[run_id].tags


def test_runs_of_an_earlier_version_without_a_namespace_are_adopted_not_duplicated(tmp_path):
    """A store written before namespaces existed: its parents are taken over by the first evaluation
    that finds them and tagged with its namespace, instead of a second parent beside each."""
    from mlflow.tracking import MlflowClient

    from crowdskin.train.tracking import NAMESPACE_TAG

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = ensure_experiment(uri, EXPERIMENT)
    client = MlflowClient(tracking_uri=uri)
    ids = {(t, b, k): fold_run(uri, t, b, k) for t in ("baseline",) for b in BACKBONES for k in FOLDS}
    legacy = {b: client.create_run(experiment_id, run_name=f"baseline/{b}", tags={
        "crowdskin.role": "parent", "task": "baseline", "backbone": b}).info.run_id for b in BACKBONES}
    auc_table, runs, comparisons = tables(ids)
    auc_table = auc_table[(auc_table["model"] == "baseline") & auc_table["backbone"].isin(BACKBONES)]
    result = log_comparisons(uri, EXPERIMENT, auc_table=auc_table, runs=runs, members={}, comparisons=comparisons,
                             namespace="/scratch/adopter")
    assert result.set_index("backbone")["run_id"].to_dict() == legacy and not result["created"].any()
    for run_id in legacy.values():
        assert client.get_run(run_id).data.tags[NAMESPACE_TAG] == "/scratch/adopter"
    for (_task, backbone, _fold), run_id in ids.items():  # fold runs of that version, adopted with them
        tags = client.get_run(run_id).data.tags
        assert tags["mlflow.parentRunId"] == legacy[backbone] and tags[NAMESPACE_TAG] == "/scratch/adopter"


def test_a_fold_run_of_another_namespace_in_runs_csv_is_named_and_left_alone(tmp_path, caplog):
    """runs.csv copied from another working directory that shares the store: its fold run is not taken."""
    from mlflow.tracking import MlflowClient

    from crowdskin.train.tracking import NAMESPACE_TAG

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ensure_experiment(uri, EXPERIMENT)
    ours = fold_run(uri, "baseline", "vgg16", 0, **{NAMESPACE_TAG: "/scratch/ours"})
    theirs = fold_run(uri, "baseline", "vgg16", 1, **{NAMESPACE_TAG: "/scratch/theirs"})
    auc_table, runs, comparisons = tables({("baseline", "vgg16", 0): ours, ("baseline", "vgg16", 1): theirs})
    auc_table = auc_table.query("model == 'baseline' and backbone == 'vgg16'")
    with caplog.at_level("WARNING"):
        result = log_comparisons(uri, EXPERIMENT, auc_table=auc_table, runs=runs, members={}, namespace="/scratch/ours")
    assert result["n_children"].tolist() == [1]
    assert f"fold run(s) {theirs} of baseline/vgg16 belong to namespace(s) ['/scratch/theirs']" in caplog.text
    assert "mlflow.parentRunId" not in MlflowClient(tracking_uri=uri).get_run(theirs).data.tags

"""MLflow comparisons: the evaluation's numbers beside the training runs, in the same experiment.

Every training job logs one run (crowdskin.train.tracking). At the end of the workflow this module adds

- per (task, backbone), a parent run with the model's aggregate scores: the pooled out-of-fold test
  AUC with its bootstrap interval (`pooled_test_auc`, the headline to sort by, `pooled_test_auc_ci_low`,
  `pooled_test_auc_ci_high`), the folds' mean and sd (`fold_mean_test_auc`, `fold_sd_test_auc`,
  `n_folds`) and, from the pooled comparison against the baseline of its backbone, the difference
  with its Bonferroni-adjusted interval (consistent with Holm's p) and p-values
  (`pooled_test_auc_minus_baseline`, `..._ci_low`, `..._ci_high`, `delong_p_vs_baseline`,
  `holm_p_vs_baseline`). Nothing per fold: a fold's `test_auc` is on its fold
  run, and one logged on the parent at step k would show as the parent's latest value, ranking the
  model by its last fold. The job's fold runs are nested under it by their `mlflow.parentRunId` tag,
  which is all the MLflow UI needs to show them as children;
- per (ensemble, backbone), including backbone `all`, a run with the same metrics and, in the tag
  `crowdskin.member_runs`, the ids of its members' parent runs. An ensemble has no training job, so this
  is its only run;
- one run `checks` (`crowdskin.role=checks`) under which every backbone check run is nested, each tagged
  `kind=check` and `crowdskin.role=check` (check runs of older versions lacked those tags), so a filter
  by kind, or a look at the top level, never takes a one-step check for a model.

Runs are found again by their tags (`crowdskin.role`, `task`, `backbone`) within the namespace of the
working directory (`crowdskin.namespace`: two working directories that share a store and a run_name each
see only their own runs), so a second call (after a re-train, say) updates them instead of adding more:
metrics are logged again with a newer timestamp, which MLflow shows as the latest, and a fold run that
runs.csv no longer lists leaves its parent and is tagged `crowdskin.superseded=true`. MLflow cannot
delete one metric of a run, so a parent or ensemble run that carries a metric this call does not log (a
per-fold `test_auc` or an old metric name of an earlier version, a score that is now undefined) is
deleted (MLflow's soft delete: `mlflow gc` purges it, the UI's deleted-runs view still shows it) and
created afresh under the same name and tags; its fold runs are nested under the new run and ensembles
name the new id. Updating it in place would leave the stale value in the runs table, where a sort would
rank by it.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pandas as pd

from crowdskin.evaluate.ensemble import ALL_BACKBONES
from crowdskin.evaluate.scores import REFERENCE
from crowdskin.train.kinds import ENSEMBLE_KIND
from crowdskin.train.tracking import (
    CHECK_KIND,
    CHECK_TAGS,
    HEADLINE_METRIC,
    NAMESPACE_TAG,
    ROLE_TAG,
    _retry,
    bound_http_retries,
    ensure_experiment,
    namespace_of,
)

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
SUPERSEDED_TAG = "crowdskin.superseded"
MEMBER_RUNS_TAG = "crowdskin.member_runs"
CHECK_TAG = "crowdskin.check"  # every check job's run has it, whichever version logged it
CHECKS_ROLE, CHECKS_NAME = "checks", "checks"
# metric name -> auc_summary column; the headline first
SUMMARY_METRICS = {HEADLINE_METRIC: "pooled_auc", f"{HEADLINE_METRIC}_ci_low": "pooled_ci_low",
                   f"{HEADLINE_METRIC}_ci_high": "pooled_ci_high", "fold_mean_test_auc": "mean_auc",
                   "fold_sd_test_auc": "sd_auc", "n_folds": "n_folds"}
# metric name -> comparisons column, from the pooled comparison against the baseline of the same
# backbone. The interval is the adjusted one, which agrees with holm_p beside it (an unadjusted
# bootstrap interval can clear 0 beside a Holm p of 0.16).
BASELINE_METRICS = {f"{HEADLINE_METRIC}_minus_baseline": "difference",
                    f"{HEADLINE_METRIC}_minus_baseline_ci_low": "adjusted_ci_low",
                    f"{HEADLINE_METRIC}_minus_baseline_ci_high": "adjusted_ci_high",
                    "delong_p_vs_baseline": "delong_p", "holm_p_vs_baseline": "holm_p"}
CHECKS_NOTE = ("One-step training runs of the backbones the grid does not train (`train.backbone_checks`): "
               "they prove each backbone's code path, not a model. Their AUCs mean nothing; never rank them.")
COLUMNS = ["role", "model", "backbone", "run_id", "n_children", "n_members", "created"]
_PAGE = 1000
# Run ids go into a filter string unquoted by MLflow; anything else in runs.csv is not a run id.
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]+$")
# MLflow's limits for one log_batch call (mlflow.utils.validation).
_BATCH_METRICS, _BATCH_PARAMS, _BATCH_TAGS = 1000, 100, 100
_MAX_TAG_VALUE, _MAX_PARAM_VALUE = 8000, 6000


@dataclass
class _Target:
    """One parent, ensemble or checks run, as this call wants it."""

    role: str
    model: str
    backbone: str
    kind: str | None
    source: str | None
    summary: dict[str, float] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)  # fold run ids (parents), check run ids (checks)
    members: list[str] | None = None  # member model names (ensembles; None when the mapping lacks it)
    member_runs: list[str] = field(default_factory=list)
    run_id: str = ""
    created: bool = False
    replaced: str = ""  # the run of an earlier call this call deleted and created afresh
    params: dict[str, str] = field(default_factory=dict)  # what the run already has
    namespace: str = ""  # the working directory (or mlflow.run_namespace) whose run this is

    @property
    def key(self) -> tuple[str, str, str]:
        return self.role, self.model, self.backbone

    @property
    def tags(self) -> dict[str, str]:
        if self.role == CHECKS_ROLE:  # no task or backbone: a filter on either never finds it
            return {ROLE_TAG: CHECKS_ROLE, "kind": CHECK_KIND, "mlflow.note.content": CHECKS_NOTE,
                    NAMESPACE_TAG: self.namespace}
        return {ROLE_TAG: self.role, "task": self.model, "backbone": self.backbone,
                "kind": str(self.kind), "source": str(self.source),  # str(None) as the fold runs have it
                NAMESPACE_TAG: self.namespace}


def _run_key(tags: Mapping[str, str]) -> tuple[str, str, str]:
    if tags.get(ROLE_TAG) == CHECKS_ROLE:
        return CHECKS_ROLE, CHECKS_NAME, ""
    return tags.get(ROLE_TAG, ""), tags.get("task", ""), tags.get("backbone", "")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def _require(name: str, frame: pd.DataFrame, needed: Sequence[str]) -> None:
    missing = [column for column in needed if column not in frame.columns]
    if missing:  # e.g. the wide table, one row per model, instead of the long one
        raise ValueError(f"{name} lacks column(s) {missing}; it has {list(frame.columns)}")


def _against_baseline(comparisons: pd.DataFrame | None) -> dict[tuple[str, str], dict[str, float]]:
    """(model, backbone) -> the pooled comparison with the baseline, as metrics. Per-fold comparisons
    (the only ones of a repeated holdout) stay out: a parent carries nothing per fold."""
    if comparisons is None:
        return {}
    _require("comparisons", comparisons, ["model", "reference", "backbone", "scope", *BASELINE_METRICS.values()])
    rows = comparisons[(comparisons["scope"] == "pooled") & (comparisons["reference"] == REFERENCE)]
    return {(str(row["model"]), str(row["backbone"])): {
        name: value for name, column in BASELINE_METRICS.items() if (value := _number(row[column])) is not None}
        for row in rows.to_dict("records")}


def _targets(auc_table: pd.DataFrame, runs: pd.DataFrame, members: Mapping[str, Sequence[str]],
             comparisons: pd.DataFrame | None) -> tuple[list[_Target], list[_Target], list[str]]:
    """Parents, ensembles and the real backbones (in order of appearance), from the tables alone."""
    _require("auc_table", auc_table, ["model", "kind", "source", "backbone", *SUMMARY_METRICS.values()])
    _require("runs", runs, ["task", "backbone", "mlflow_run_id"])
    against = _against_baseline(comparisons)
    children: dict[tuple[str, str], list[str]] = {}
    for task, backbone, run_id in zip(runs["task"], runs["backbone"], runs["mlflow_run_id"], strict=True):
        text = _text(run_id)
        if not text or not text.strip():
            continue  # the job's logging failed: nothing to nest
        if not _RUN_ID.match(text.strip()):
            log.warning("runs.csv: %s/%s has %r, not a run id; left out", task, backbone, text)
            continue
        children.setdefault((str(task), str(backbone)), []).append(text.strip())
    children = {key: list(dict.fromkeys(ids)) for key, ids in children.items()}  # a row listed twice

    parents: dict[tuple[str, str], _Target] = {}
    ensembles: dict[tuple[str, str], _Target] = {}
    backbones: list[str] = []
    for row in auc_table.to_dict("records"):
        model, backbone, kind = str(row["model"]), str(row["backbone"]), _text(row.get("kind"))
        summary = {name: value for name, column in SUMMARY_METRICS.items()
                   if (value := _number(row.get(column))) is not None}
        summary |= against.get((model, backbone), {})
        # backbone `all` is an average over the backbones, always an ensemble whatever its kind says
        role = "ensemble" if kind == ENSEMBLE_KIND or backbone == ALL_BACKBONES else "parent"
        target = _Target(role, model, backbone, ENSEMBLE_KIND if role == "ensemble" else kind, _text(row.get("source")),
                         summary)
        if role == "ensemble":
            listed = members.get(model)
            target.members = None if listed is None else [str(m) for m in listed]
            ensembles[(model, backbone)] = target
        else:
            target.children = children.get((model, backbone), [])
            parents[(model, backbone)] = target
        if backbone != ALL_BACKBONES and backbone not in backbones:
            backbones.append(backbone)
    # A job in runs.csv without a row in the table (its evaluation failed) still gets its parent;
    # kind and source then come from its fold runs' tags.
    for (task, backbone), ids in children.items():
        if (task, backbone) not in parents and backbone != ALL_BACKBONES:
            parents[(task, backbone)] = _Target("parent", task, backbone, None, None, children=ids)
            if backbone not in backbones:
                backbones.append(backbone)
    return list(parents.values()), list(ensembles.values()), backbones


def _search(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    """Every active run of the experiment that matches, oldest first, over all result pages."""
    found: list[Any] = []
    token = None
    while True:
        page = _retry(partial(client.search_runs, [experiment_id], filter_string, max_results=_PAGE,
                              order_by=["attributes.start_time ASC"], page_token=token),
                      what=f"search_runs {filter_string!r}")
        found += list(page)
        token = page.token
        if not token:
            return found


def _log_batch(client: Any, run_id: str, *, metrics: Sequence[Any] = (), params: Sequence[Any] = (),
               tags: Sequence[Any] = ()) -> None:
    """One log_batch call for what fits MLflow's per-call limits (all of it here, in practice)."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    while metrics or params or tags:
        _retry(partial(client.log_batch, run_id, metrics=metrics[:_BATCH_METRICS], params=params[:_BATCH_PARAMS],
                       tags=tags[:_BATCH_TAGS]), what=f"log_batch {run_id}")
        metrics, params, tags = metrics[_BATCH_METRICS:], params[_BATCH_PARAMS:], tags[_BATCH_TAGS:]


def log_comparisons(uri: str, experiment: str, *, auc_table: pd.DataFrame, runs: pd.DataFrame,
                    members: Mapping[str, Sequence[str]], namespace: str,
                    comparisons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add (or update) the parent runs of the training tasks, the ensemble runs and the checks run in
    `experiment`.

    `auc_table`, `runs` and `comparisons` are results/scores/auc_summary.csv, results/train/runs.csv and
    results/scores/comparisons.csv (formats in crowdskin.evaluate; without `comparisons` no run gets the
    differences against the baseline); `members` maps an ensemble's name to its member models
    (crowdskin.evaluate.ensemble.Ensemble.members; for backbone `all` each member counts on every real
    backbone). A training task gets one parent per real backbone (run name `task/backbone`, tag
    `crowdskin.role=parent`) and its fold runs from runs.csv are nested under it; a row of `auc_table`
    with kind `ensemble` gets an ensemble run (`crowdskin.role=ensemble`); the experiment's backbone
    check runs (tag `crowdskin.check=true`) are tagged as checks and nested under one run `checks`.

    `namespace` (crowdskin.train.tracking.run_namespace: the working directory, or `mlflow.run_namespace`)
    says whose runs these are when several working directories share one store and run_name: every run
    this call makes or updates is tagged with it, and it finds, nests and supersedes only runs of its
    own namespace. A run without the tag (an earlier version's) is taken as its own and tagged; a fold run
    of runs.csv that names another namespace is left alone with a warning. NaN
    scores are left out, fold runs with no run id are skipped, and fold runs not in the experiment are
    skipped with a warning. Idempotent: runs are found again by tags and updated, never duplicated; one
    carrying a metric this call does not log is replaced (module docstring).

    Returns one row per parent, ensemble or checks run: role, model, backbone, run_id, n_children (fold
    or check runs nested under it), n_members (member parent runs named), created (made by this call,
    afresh or in place of a stale run). Raises ValueError when a table lacks a column it needs, and the
    store's error after `_retry`'s attempts when it stays unreachable.
    """
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    started = time.time()
    parents, ensembles, backbones = _targets(auc_table, runs, members, comparisons)
    bound_http_retries()
    client = MlflowClient(tracking_uri=uri)
    experiment_id = ensure_experiment(uri, experiment)

    # A few searches fetch all this call needs from the store, rather than one query per run.
    existing: dict[tuple[str, str, str], Any] = {}
    # Runs of this namespace first, so that one of an earlier version (no namespace) is adopted only
    # where this namespace has none of its own.
    candidates = [run for run in _search(client, experiment_id, f'tags."{ROLE_TAG}" IS NOT NULL')
                  if namespace_of(run.data.tags) in (namespace, None)]
    candidates.sort(key=lambda run: namespace_of(run.data.tags) is None)
    for run in candidates:
        key = _run_key(run.data.tags)
        if key[0] not in ("parent", "ensemble", CHECKS_ROLE):  # a check run has a role too
            continue
        if key in existing:
            if namespace_of(run.data.tags) is None:
                continue  # an earlier version's run beside this namespace's own: not this call's to touch
            log.warning("MLflow: more than one %s run for %s/%s (%s, %s); updating the oldest",
                        *key, existing[key].info.run_id, run.info.run_id)
            continue
        existing[key] = run
    listed = sorted({run_id for target in parents for run_id in target.children})
    fold_runs: dict[str, Any] = {}
    for start in range(0, len(listed), 500):
        ids = ", ".join(f"'{run_id}'" for run_id in listed[start:start + 500])
        page_runs = _search(client, experiment_id, f"attributes.run_id IN ({ids})")
        fold_runs.update((run.info.run_id, run) for run in page_runs)
    nested = _search(client, experiment_id, f'tags."{PARENT_TAG}" IS NOT NULL')
    check_runs = {run.info.run_id: run for run in _search(client, experiment_id, f"tags.\"{CHECK_TAG}\" = 'true'")
                  if namespace_of(run.data.tags) in (namespace, None)}
    checks = []
    if check_runs or (CHECKS_ROLE, CHECKS_NAME, "") in existing:
        checks = [_Target(CHECKS_ROLE, CHECKS_NAME, "", CHECK_KIND, None, children=list(check_runs))]
    targets = parents + ensembles + checks
    for target in targets:
        target.namespace = namespace

    for target in targets:
        if target.role == "parent":
            missing = [run_id for run_id in target.children if run_id not in fold_runs]
            if missing:
                log.warning("MLflow: fold run(s) %s of %s/%s are not active runs of experiment %r; not nested",
                            ", ".join(missing), target.model, target.backbone, experiment)
            target.children = [run_id for run_id in target.children if run_id in fold_runs]
            foreign = [run_id for run_id in target.children
                       if namespace_of(fold_runs[run_id].data.tags) not in (namespace, None)]
            if foreign:
                log.warning("MLflow: fold run(s) %s of %s/%s belong to namespace(s) %s, not %r; not nested",
                            ", ".join(foreign), target.model, target.backbone,
                            sorted({namespace_of(fold_runs[run_id].data.tags) for run_id in foreign}), namespace)
            target.children = [run_id for run_id in target.children if run_id not in foreign]
            for run_id in target.children:  # a parent found only in runs.csv takes kind and source from its folds
                tags = fold_runs[run_id].data.tags
                target.kind = target.kind or tags.get("kind")
                target.source = target.source or tags.get("source")
        found = existing.get(target.key)
        if found is not None:
            stale = sorted(set(found.data.metrics) - set(target.summary))
            if not stale:
                target.run_id, target.params = found.info.run_id, dict(found.data.params)
                continue
            log.info("MLflow: %s run %s of %s/%s has metric(s) %s this version does not log; replaced",
                     target.role, found.info.run_id, target.model, target.backbone, ", ".join(stale))
            _retry(partial(client.delete_run, found.info.run_id), what=f"delete_run {found.info.run_id}")
            target.replaced = found.info.run_id
        name = target.model if target.role == CHECKS_ROLE else f"{target.model}/{target.backbone}"
        run = _retry(partial(client.create_run, experiment_id, run_name=name, tags=target.tags),
                     what=f"create_run {name}")
        target.run_id, target.created = run.info.run_id, True

    parent_ids = {(t.model, t.backbone): t.run_id for t in parents}
    ensemble_ids = {(t.model, t.backbone): t.run_id for t in ensembles}
    for target in ensembles:
        over = backbones if target.backbone == ALL_BACKBONES else [target.backbone]
        for member in target.members or []:
            for backbone in over:
                run_id = parent_ids.get((member, backbone)) or ensemble_ids.get((member, backbone))
                if run_id:
                    target.member_runs.append(run_id)
                else:
                    log.warning("MLflow: ensemble %s/%s: member %s/%s has no run", target.model, target.backbone,
                                member, backbone)

    now = int(time.time() * 1000)
    for target in targets:
        tags = target.tags
        params: dict[str, str] = {}
        if target.role == "ensemble":
            tags[MEMBER_RUNS_TAG] = ",".join(target.member_runs)[:_MAX_TAG_VALUE]
            if target.members is not None:
                value = ",".join(target.members)[:_MAX_PARAM_VALUE]
                # MLflow params are write-once: a changed member list would fail every retry.
                if target.params.get("members", value) == value:
                    params["members"] = value
                else:
                    log.warning("MLflow: ensemble %s/%s had members %s, now %s; the param keeps the old list "
                                "(tag %s is current)", target.model, target.backbone, target.params["members"],
                                value, MEMBER_RUNS_TAG)
        metrics = [Metric(name, value, now, 0) for name, value in target.summary.items()]
        _log_batch(client, target.run_id, metrics=metrics,
                   params=[Param(k, v) for k, v in params.items() if k not in target.params],
                   tags=[RunTag(k, v) for k, v in tags.items()])
        if target.created:
            _retry(partial(client.set_terminated, target.run_id), what=f"set_terminated {target.run_id}")

    # Nest the listed fold runs and the check runs; touch only those whose tags are not already right.
    wanted: dict[str, str] = {run_id: t.run_id for t in parents for run_id in t.children}
    for run_id, parent_id in wanted.items():
        tags = fold_runs[run_id].data.tags
        right = {PARENT_TAG: parent_id, NAMESPACE_TAG: namespace}
        _log_batch(client, run_id, tags=[RunTag(k, v) for k, v in right.items() if tags.get(k) != v])
        if SUPERSEDED_TAG in tags:  # listed again (runs.csv restored): no longer superseded
            _retry(partial(client.delete_tag, run_id, SUPERSEDED_TAG), what=f"delete_tag {run_id}")
    for target in checks:
        for run_id in target.children:
            tags = check_runs[run_id].data.tags
            right = {**CHECK_TAGS, PARENT_TAG: target.run_id, NAMESPACE_TAG: namespace}
            _log_batch(client, run_id, tags=[RunTag(k, v) for k, v in right.items() if tags.get(k) != v])
    ours = set(parent_ids.values()) | {t.replaced for t in parents if t.replaced}
    superseded = [run.info.run_id for run in nested
                  if run.data.tags.get(PARENT_TAG) in ours and run.info.run_id not in wanted]
    for run_id in superseded:
        _retry(partial(client.delete_tag, run_id, PARENT_TAG), what=f"delete_tag {run_id}")
        _log_batch(client, run_id, tags=[RunTag(SUPERSEDED_TAG, "true")])

    log.info("MLflow comparisons in %r: %d parents, %d ensemble runs, %d check runs (%d runs new, %d of them "
             "replacing a stale run), %d fold runs nested, %d superseded, in %.1f s", experiment, len(parents),
             len(ensembles), len(check_runs), sum(t.created for t in targets), sum(bool(t.replaced) for t in targets),
             len(wanted), len(superseded), time.time() - started)
    rows = [(t.role, t.model, t.backbone, t.run_id, len(t.children) if t.role != "ensemble" else 0,
             len(t.member_runs), t.created) for t in targets]
    return pd.DataFrame(rows, columns=COLUMNS)

"""MLflow: one run per job, logged after the job's outputs are on disk.

The default store is SQLite under results/ (`sqlite:///results/mlflow/mlflow.db`), which takes
concurrent writers on one machine; `MLFLOW_TRACKING_URI` or the config's `mlflow.tracking_uri` point
elsewhere. The experiment is created once by its own rule, before the training jobs, so parallel
jobs never race to create the database schema. Every call is retried; a store that stays
unreachable yields a warning and `mlflow_error` in metrics.json, never a lost training.

On a cluster, SQLite is not safe: its locks do not hold over NFS and many nodes writing one file
corrupt it or fail with "database is locked". So a job in a Slurm allocation with a file-based
store (`defer_logging`) logs nothing itself: it leaves its run in metrics.json (`pending_run`), and
the local `train_summary` job logs every such run from the submitting machine. With a tracking
server (`http(s)://`), jobs log directly, as they do locally.

The experiment carries a description (`mlflow.note.content`: how its runs are organised, which
metric ranks the models) and `mlflow.experimentKind=custom_model_development`, the value the MLflow
UI itself writes when a user files an experiment under "Machine learning" (its choices are that and
`genai_development`). Both are set when missing, so a store of an older version gets them and a
user's own edits stay. MLflow 3.17's UI does not take its landing tab from that tag (earlier 3.x UIs
did, and asked for the type where the tag was missing): its workflow-based navigation, always on,
follows the sidebar's GenAI / Machine learning switch, kept per browser (GenAI unless changed) or
given by the URL's `?workflowType=machine_learning`, and no server-side setting or experiment tag
changes it. Hence the README's link with that query.

A backbone check job's run is tagged `kind=check` and `crowdskin.role=check` (CHECK_TAGS): a check
proves a backbone's code path in one step, and its AUC must never pass for a model's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_DB = Path("results/mlflow/mlflow.db")  # artifacts go beside it, in results/mlflow/artifacts

ROLE_TAG = "crowdskin.role"
CHECK_KIND = "check"
CHECK_TAGS = {"kind": CHECK_KIND, ROLE_TAG: CHECK_KIND}
DESCRIPTION_TAG = "mlflow.note.content"
KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
HEADLINE_METRIC = "pooled_test_auc"
EXPERIMENT_DESCRIPTION = f"""\
Skin-lesion classifiers trained by the crowdskin workflow: one MLflow run per training job, and after
the evaluation stage one run per model and per ensemble.

**How the runs are organised**

- `<task>/<backbone>` (tag `crowdskin.role=parent`): one model, a task trained on one backbone. Expand
  it for its fold runs `<task>/<backbone>/fold<k>`, each with its own `test_auc`, training history
  and predictions.
- `<ensemble>/<backbone>` (`crowdskin.role=ensemble`, `kind=ensemble`): the average of its members'
  predictions; backbone `all` averages a task over the backbones.
- `checks` (`kind=check`): one-step training runs of backbones the grid does not train. They prove
  the code path, not a model: never rank them.

**Ranking**

Sort by `{HEADLINE_METRIC}`, the out-of-fold test AUC pooled over the folds, with its bootstrap
interval `{HEADLINE_METRIC}_ci_low` / `{HEADLINE_METRIC}_ci_high`. `fold_mean_test_auc` and
`fold_sd_test_auc` are the folds' spread; `{HEADLINE_METRIC}_minus_baseline` (with its interval,
`delong_p_vs_baseline` and `holm_p_vs_baseline`) is the paired difference against the baseline of
the same backbone. Only model and ensemble runs carry these metrics, so the filter
`metrics.{HEADLINE_METRIC} >= 0 and tags.backbone = 'vgg16'` ranks one backbone's models and
ensembles; `tags.kind != '{CHECK_KIND}'` leaves out the checks from any other filter.
"""
EXPERIMENT_TAGS = {DESCRIPTION_TAG: EXPERIMENT_DESCRIPTION, KIND_TAG: EXPERIMENT_KIND}


def tracking_uri(configured: str | None = None, *, workdir: str | Path = ".") -> str:
    """MLFLOW_TRACKING_URI, else the configured URI, else the SQLite store under results/."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri:
        return uri
    return f"sqlite:///{(Path(workdir) / DEFAULT_DB).resolve()}"


# MLflow's own HTTP client retries a refused connection 7 times with a backoff factor of 2 and waits
# 120 s for an answer: with a tracking server down, one call took over 5 minutes here, and a job
# makes several. `_retry` already retries every call, so the HTTP layer's share is bounded: a job
# whose server is down gives up within seconds (8.7 s for a refused connection here) and keeps its
# outputs. Set these variables yourself to wait longer.
HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def bound_http_retries() -> None:
    """MLflow's HTTP retry and timeout settings, bounded where the user has not set them."""
    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)


def _retry(call: Callable[[], T], *, what: str, attempts: int = 5, backoff_s: float = 0.5) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as error:  # any store error is retried, then reported
            if attempt == attempts:
                raise
            log.warning("MLflow %s failed (attempt %d/%d): %s", what, attempt, attempts, error)
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


# A deferred run carries the hash of its record as this tag, so logging it twice finds it instead.
RECORD_TAG = "crowdskin.record"
# Whose run it is: working directories that share one store and one run_name (the cluster case) must
# never find, update or supersede each other's runs. Every run the workflow makes carries it.
NAMESPACE_TAG = "crowdskin.namespace"


def run_namespace(configured: str | None = None, *, workdir: str | Path = ".") -> str:
    """The configured `mlflow.run_namespace`, else the absolute working directory: readable in the
    MLflow UI and a filter (`tags."crowdskin.namespace" = '/scratch/me/study'`), unlike a hash of it."""
    if configured is not None and configured.strip():
        return configured.strip()
    return str(Path(workdir).resolve())


def namespace_of(tags: Mapping[str, str]) -> str | None:
    """A run's namespace; None for a run of an earlier version, which had none."""
    return tags.get(NAMESPACE_TAG)


def defer_logging(uri: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a job should leave its run for the local summary job: inside a Slurm allocation
    (another node, perhaps) with a store that is a file rather than a server."""
    return "SLURM_JOB_ID" in environ and not uri.startswith(("http://", "https://", "databricks"))


def pending_run(experiment: str, run_name: str, *, params: Mapping[str, Any], tags: Mapping[str, str],
                metrics: Mapping[str, float]) -> dict[str, Any]:
    """A run as JSON for metrics.json, with `record`: the hash that identifies it once logged."""
    import hashlib
    import json

    record = {"experiment": experiment, "run_name": run_name, "params": flatten(params), "tags": dict(tags),
              "metrics": dict(metrics)}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return {**record, "record": digest}


def find_pending_run(uri: str, pending: Mapping[str, Any]) -> str | None:
    """The id of the run already logged from this record, if any."""
    from mlflow.tracking import MlflowClient

    bound_http_retries()
    client = MlflowClient(tracking_uri=uri)
    experiment_id = ensure_experiment(uri, pending["experiment"])
    found = _retry(lambda: client.search_runs([experiment_id], f"tags.`{RECORD_TAG}` = '{pending['record']}'",
                                              max_results=1), what="search for a logged record")
    return found[0].info.run_id if found else None


def ensure_experiment(uri: str, name: str, *, artifact_root: str | Path | None = None) -> str:
    """Create (or find) the experiment, with EXPERIMENT_TAGS where it lacks them; returns its id.
    Creates the SQLite schema on first use."""
    from mlflow.tracking import MlflowClient

    bound_http_retries()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    if artifact_root is None and uri.startswith("sqlite:///"):
        # MLflow's default is ./mlruns of whatever directory the process runs in; keep it by the store.
        artifact_root = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"

    def get_or_create() -> str:
        found = client.get_experiment_by_name(name)
        if found is not None:
            for key, value in EXPERIMENT_TAGS.items():
                if not found.tags.get(key):  # an experiment of an older version; a user's edit stays
                    client.set_experiment_tag(found.experiment_id, key, value)
            return str(found.experiment_id)
        location = Path(artifact_root).resolve().as_uri() if artifact_root else None
        return str(client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS))

    return _retry(get_or_create, what=f"creating experiment {name!r}")


def _resumable_run(client: Any, experiment_id: str, run_id: str) -> Any | None:
    """The run, if it is still an active run of the experiment (not deleted, not of another store)."""
    if not run_id.isalnum():
        return None  # not a run id: nothing a filter string should hold
    found = _retry(lambda: client.search_runs([experiment_id], f"attributes.run_id = '{run_id}'", max_results=1),
                   what=f"search for run {run_id}")
    return found[0] if found else None


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as dotted MLflow params (`augment.zoom`)."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def log_run(
    uri: str,
    experiment_name: str,
    *,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    history: Iterable[Mapping[str, float]],
    metrics: Mapping[str, float],
    artifacts: Iterable[str | Path],
    resume: str | None = None,
    opened: Callable[[str], None] | None = None,
) -> str:
    """Log one finished job as one run; returns the run id. Raises after the retries are spent.

    `resume`: the run an earlier attempt of the same job opened and was stopped in (Ctrl-C, a kill);
    while it is an active run of the experiment, this call completes it (what it already holds is not
    logged twice) instead of opening another. `opened` is told a new run's id before anything is
    logged to it, so that the job can keep it for such a next attempt."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    bound_http_retries()
    client = MlflowClient(tracking_uri=uri)
    experiment_id = ensure_experiment(uri, experiment_name)
    found = _resumable_run(client, experiment_id, resume) if resume else None
    if found is None:
        run = _retry(lambda: client.create_run(experiment_id, run_name=run_name, tags=dict(tags)), what="create_run")
        run_id, logged_params, logged_metrics = run.info.run_id, set(), set()
        if opened is not None:
            opened(run_id)
    else:
        run_id, logged_params, logged_metrics = found.info.run_id, set(found.data.params), set(found.data.metrics)
        log.info("MLflow: completing run %s, which an earlier attempt of this job opened", run_id)
        tag_rows = [RunTag(k, str(v)) for k, v in tags.items()]
        for start in range(0, len(tag_rows), 100):
            _retry(partial(client.log_batch, run_id, tags=tag_rows[start:start + 100]), what="log tags")
    now = int(time.time() * 1000)
    metric_rows = []
    # A metric's whole history goes in one batch (a job logs far fewer than 1000 values), so a metric
    # the stopped attempt logged at all, it logged whole.
    for row in history:
        step = int(row["epoch"])
        metric_rows += [Metric(k, float(v), now, step) for k, v in row.items()
                        if k != "epoch" and v == v and k not in logged_metrics]
    metric_rows += [Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v and k not in logged_metrics]
    param_rows = [Param(k, str(v)[:6000]) for k, v in flatten(params).items() if k not in logged_params]
    # MLflow caps a batch at 1000 metrics and 100 params.
    for start in range(0, len(param_rows), 100):
        chunk_params = param_rows[start:start + 100]
        _retry(partial(client.log_batch, run_id, params=chunk_params), what="log params")
    for start in range(0, len(metric_rows), 1000):
        chunk = metric_rows[start:start + 1000]
        _retry(partial(client.log_batch, run_id, metrics=chunk), what="log metrics")
    for artifact in artifacts:
        _retry(partial(client.log_artifact, run_id, str(artifact)), what=f"log artifact {artifact}")
    _retry(lambda: client.set_terminated(run_id), what="set_terminated")
    return run_id

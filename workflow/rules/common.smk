# Shared by every stage's file: the config (validated once, defaults from workflow/schemas/),
# the paths each stage writes, and every function that the stages' rules call.
#
# Settings reach jobs in two ways. What changes a job's result is a `params:` entry holding only
# the slice of the config that job reads (so a change re-runs exactly the jobs that read it).
# Where and how fast a job runs (the `execution:` section) is `threads:` and `resources:`, which
# Snakemake never treats as a reason to re-run.
import re
from pathlib import Path

from snakemake.common.configfile import load_configfile
from snakemake.sourcecache import LocalSourceFile

from crowdskin.acquire.fetch import mirror_files
from crowdskin.acquire.manifest import load_manifest
from crowdskin.config import ConfigError, validate_config
from crowdskin.evaluate.ensemble import ALL_BACKBONES, extra_comparisons, plan_ensembles
from crowdskin.explain.candidates import gallery_candidates
from crowdskin.files import unwritable_reason
from crowdskin.report import CATEGORIES
from crowdskin.train.backbones import BACKBONES
from crowdskin.train.kinds import (
    ANNOTATIONS,
    CROWD_LABELS,
    ENSEMBLE_KIND,
    TARGETS,
    VOTES,
    kind_of,
)
from crowdskin.train.settings import check_settings, job_settings, split_seed
from crowdskin.train.tasks import input_size, task_grid
from crowdskin.train.kinds.disagreement import SPREAD_SUFFIX


def _shown(path):
    """A config file as the user named it: relative where it is under the working directory."""
    path = Path(path).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _config_layers():
    """The sources Snakemake merged into `config`, in its order (later ones win): the files of
    `configfile:` directives, each --configfile, then --config. Read with Snakemake's own loader, so
    each value is what Snakemake made of it."""
    given = [Path(p).absolute() for p in workflow.config_settings.configfiles]
    directives = [p for p in map(Path, workflow.configfiles) if p.absolute() not in given]
    layers = []
    for path in directives + given:
        try:
            layers.append((_shown(path), load_configfile(path)))
        except (OSError, WorkflowError):
            continue  # a file Snakemake read but this cannot: its values go unattributed
    if workflow.config_settings.config:
        layers.append(("--config on the command line", dict(workflow.config_settings.config)))
    return layers


try:
    config.update(
        validate_config(
            config,
            source=", ".join(map(str, workflow.configfiles)) or "config",
            layers=_config_layers(),
        )
    )
except ConfigError as error:
    raise WorkflowError(str(error)) from None

# Every output of a run lives under results/<run_name>/, so runs of different configs (the default,
# the real sample, the paper grid) coexist in one checkout and never overwrite each other. Downloads
# are shared: resources/raw/ holds each source once, verified by its checksums, whichever config
# fetched it. The synthetic data is generated from the config, so it belongs to its run.
RUN_NAME = config["run_name"]
RESULTS = f"results/{RUN_NAME}"
RAW = f"resources/synthetic/{RUN_NAME}" if config["synthetic"]["enabled"] else "resources/raw"
FETCHED = f"{RAW}/.fetched"
# The synthetic shortcut trap (an off-lesion marker that agrees with the diagnosis in training).
# Off, its settings change nothing the generator writes, so they stay out of the rule's params.
SHORTCUT = config["synthetic"]["enabled"] and config["synthetic"]["shortcut"]["enabled"]
SYNTHETIC_SETTINGS = {
    key: value
    for key, value in config["synthetic"].items()
    if key != "shortcut" or config["synthetic"]["shortcut"]["enabled"]
}
DATA = f"{RESULTS}/data"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
ANNOTATIONS_DIR = f"{RESULTS}/annotations"
AUTOMATED_SHARDS = f"{ANNOTATIONS_DIR}/automated_shards"
CROWD = f"{RESULTS}/crowd"
ANALYSIS = f"{RESULTS}/analysis"
SPLITS = f"{RESULTS}/splits"
TRAIN = f"{RESULTS}/train"
TRAIN_CHECKS = f"{TRAIN}/checks"
ENSEMBLES = f"{RESULTS}/ensembles"
SCORES = f"{RESULTS}/scores"
TRUTH = f"{RESULTS}/truth"
REPORT = f"{RESULTS}/report"
# `snakemake --report` writes the report here (the Makefile and README name it).
REPORT_HTML = f"{RESULTS}/report.html"

if config["synthetic"]["enabled"] and (config["sources"] or config["url_lists"]):
    raise WorkflowError(
        "config: synthetic.enabled together with real sources or url_lists is not supported: ingestion "
        "reads one raw folder (the synthetic run's own under resources/synthetic/<run_name>/, or "
        "the shared downloads in resources/raw/); use one config for each"
    )

# One clear message before any job fails on its own: every output goes under these two.
for _directory in ("results", "resources"):
    _reason = unwritable_reason(_directory)
    if _reason:
        raise WorkflowError(
            f"{_directory}/ cannot be written ({_reason}): the workflow writes every output under "
            "results/ and resources/ of its working directory; run it where you can write, or "
            "name another working directory with `snakemake -d DIR`"
        )

# Each stage's file appends the outputs that `snakemake` (the `all` target) should build.
ALL_TARGETS = []

EXECUTION = config["execution"]

# --- the workflow's own files ---------------------------------------------------------------
# This file's folder (workflow/rules/), taken while Snakemake parses it. Not `workflow.basedir`: that
# is the folder of the *main* Snakefile, which is the user's project when this workflow runs as a
# module (`module crowdskin: snakefile: ...`, as `snakedeploy deploy-workflow` writes it). Outputs go
# to the working directory either way; only the workflow's own files are found from here.
_RULES_DIR = workflow.current_basedir
# Where a module read from a git host keeps the workflow's files that rules take as inputs.
_HOSTED_COPIES = Path(".snakemake") / "crowdskin-workflow"


def workflow_file(relative):
    """workflow/<relative> as a local path. Where the workflow is on disk (a checkout, or a module
    named by its path): the file itself. Where the module is read from a git host (`github(...)`),
    whose files are on no disk: a copy under .snakemake/crowdskin-workflow/ of the working directory,
    laid out as workflow/ (the manifest beside checksums/), rewritten only when its content changes,
    so that the rules taking these files as inputs see one stable path and an unchanged file."""
    if isinstance(_RULES_DIR, LocalSourceFile):
        return str(Path(_RULES_DIR.get_path_or_uri(secret_free=False)).parent / relative)
    content = Path(workflow.source_path(f"../{relative}")).read_bytes()
    copy = _HOSTED_COPIES / relative
    if not copy.is_file() or copy.read_bytes() != content:
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(content)
    return str(copy)


# --- acquisition --------------------------------------------------------------------------
MANIFEST_FILE = Path(workflow_file("manifest.yaml"))
MANIFEST = load_manifest(MANIFEST_FILE)
# workflow/checksums/ beside the manifest (fetch_source.py finds it the same way); each list is
# copied by workflow_file, so that a hosted module has them beside its copy of the manifest too.
CHECKSUM_DIR = MANIFEST_FILE.parent / "checksums"
for _source in MANIFEST.values():
    if _source.checksums:
        workflow_file(f"checksums/{_source.checksums}")
URL_LISTS = {entry["name"]: entry for entry in config["url_lists"]}

_unknown_sources = [s for s in config["sources"] if s not in MANIFEST]
if _unknown_sources:
    raise WorkflowError(
        f"config 'sources': unknown source(s) {_unknown_sources}; {MANIFEST_FILE} defines {sorted(MANIFEST)}"
    )


def script_path(name):
    return f"../scripts/{name}"


def fetched_markers():
    markers = [f"{FETCHED}/{source}.json" for source in config["sources"]]
    markers += [f"{FETCHED}/url_list_{name}.json" for name in URL_LISTS]
    if config["synthetic"]["enabled"]:
        markers.append(f"{FETCHED}/synthetic.json")
    return markers


def raw_root(marker):
    """resources/raw/, found from a fetch marker (<raw>/.fetched/<name>.json) rather than spelled out."""
    return str(Path(marker).parent.parent)


# What ingestion reads. A study's own folder and long tables, where none is configured, stay out of
# the rule's params, so that runs of the ISIC/ENHANCE formats are not re-run for their defaults.
INGEST_SETTINGS = {
    key: value
    for key, value in config["ingest"].items()
    if key not in ("root", "annotations") or value
}
# A study's own folder (`ingest.root`): nothing fetches it, so its tables are the ingest rule's
# inputs themselves (its images are found by listing folders, which the tables' change re-runs).
INGEST_ROOT = config["ingest"]["root"]
INGEST_ROOT_FILES = (
    [
        str(Path(INGEST_ROOT) / entry["csv"])
        for entry in config["ingest"]["diagnosis"]
        if entry["format"] == "generic"
    ]
    + [str(Path(INGEST_ROOT) / entry["file"]) for entry in config["ingest"]["annotations"]]
    if INGEST_ROOT
    else []
)
if not fetched_markers() and not INGEST_ROOT:
    raise WorkflowError(
        "config: nothing to read: no `sources`, no `url_lists`, synthetic.enabled is false and "
        "ingest.root is not set; name a study's own folder in ingest.root (README: Bring your own "
        "study), or turn the synthetic default back on"
    )


def mirror_inputs(wildcards):
    """The mirror's files, so that a changed mirror file re-runs its fetch (and re-verifies it)."""
    if not config["mirror"]:
        return []
    source = MANIFEST[wildcards.source]
    base = Path(config["mirror"]) / source.dest
    return [
        str(base / rel) if rel else str(base)
        for rel, _ in mirror_files(source, Path(config["mirror"]), CHECKSUM_DIR)
    ]


def checksum_list(wildcards):
    source = MANIFEST[wildcards.source]
    return [str(CHECKSUM_DIR / source.checksums)] if source.checksums else []


# --- automated ----------------------------------------------------------------------------
# The algorithms' settings: everything in `automated` but the shard size, which only groups rows.
AUTOMATED_SETTINGS = {k: v for k, v in config["automated"].items() if k != "shard_size"}


def _automated_plan():
    import pandas as pd

    return pd.read_parquet(checkpoints.automated_plan.get().output.plan)


def automated_shard_rows(wildcards):
    plan = _automated_plan()
    rows = plan[plan["shard"] == int(wildcards.shard)]
    return rows[["image_id", "dataset", "image_path", "mask_path"]].to_dict("records")


def automated_shard_files(wildcards):
    rows = automated_shard_rows(wildcards)
    # only files that exist: a missing one becomes that row's status, not a missing-input error
    paths = {
        r[k] for r in rows for k in ("image_path", "mask_path") if isinstance(r[k], str) and r[k]
    }
    return sorted(p for p in paths if Path(p).is_file())


def automated_shard_outputs(wildcards):
    # shard -1 holds the lesions without a mask: no job (crowdskin.automated.annotate.NO_SHARD)
    shards = sorted(k for k in set(_automated_plan()["shard"]) if k >= 0)
    return [f"{AUTOMATED_SHARDS}/shard_{k:04d}.parquet" for k in shards]


# --- crowd --------------------------------------------------------------------------------
CROWD_SETTINGS = config["crowd"]
# The simulated MTurk workers' spammer flags: the synthetic run's own truth, unless a config names
# another file.
TRUTH_WORKERS = CROWD_SETTINGS["truth"]["workers"] or (
    f"{RAW}/synthetic/truth/workers.csv" if config["synthetic"]["enabled"] else None
)


def crowd_annotation_inputs(wildcards):
    paths = [f"{DATA}/annotations.parquet"]
    if CROWD_SETTINGS["use_automated"]:
        paths.append(rules.automated_collect.output.long)
    return paths


# --- split and train ----------------------------------------------------------------------
TRAIN_SETTINGS = config["train"]
TRAIN_EXECUTION = EXECUTION["train"]
try:
    TRAIN_TASKS = {task.name: task for task in task_grid(TRAIN_SETTINGS)}
except ImportError as error:  # a train.plugins module that is not importable
    raise WorkflowError(str(error)) from None
# What each kind of task is (crowdskin.train.kinds): the tables its jobs read, the model it starts from.
TRAIN_KINDS = {name: kind_of(task.kind) for name, task in TRAIN_TASKS.items()}
TRAIN_BACKBONES = TRAIN_SETTINGS["backbones"]
TRAIN_FOLDS = list(range(config["split"]["n_folds"]))
TRAIN_CHECK_BACKBONES = TRAIN_SETTINGS["backbone_checks"]
TRAIN_SIZES = {b: input_size(TRAIN_SETTINGS, b) for b in TRAIN_BACKBONES + TRAIN_CHECK_BACKBONES}
CROWDSIM = TRAIN_SETTINGS["crowdsim"]["enabled"]
# The models another task fine-tunes (crowdsim-incremental starts from the fold's baseline).
TRAIN_STARTS_FROM = {
    name: kind.starts_from for name, kind in TRAIN_KINDS.items() if kind.starts_from
}
for _task, _start in TRAIN_STARTS_FROM.items():
    if _start not in TRAIN_TASKS:
        raise WorkflowError(
            f"task {_task} fine-tunes the {_start} model, which the grid does not train"
        )
if TRAIN_STARTS_FROM and TRAIN_SETTINGS["save_model"] == "none":
    raise WorkflowError(
        f"train.save_model none: {', '.join(TRAIN_STARTS_FROM)} fine-tune(s) a saved model "
        f"({', '.join(sorted(set(TRAIN_STARTS_FROM.values())))}); use save_model all or needed"
    )
# Tasks whose model learns each annotator: their jobs also write annotators.parquet.
TRAIN_ANNOTATED = [name for name, kind in TRAIN_KINDS.items() if kind.annotator_model]
# Tasks whose job writes model.keras; the others are a second rule without that output.
TRAIN_SAVED = [
    name
    for name in TRAIN_TASKS
    if TRAIN_SETTINGS["save_model"] == "all"
    or (TRAIN_SETTINGS["save_model"] == "needed" and name in TRAIN_STARTS_FROM.values())
]
# A weights file named by path is part of the experiment: an input of every training job.
TRAIN_WEIGHTS_FILE = (
    TRAIN_SETTINGS["weights"] if TRAIN_SETTINGS["weights"] not in ("none", "imagenet") else None
)

# Slurm and the local scheduler read the same declarations; `gpu` only where GPUs are asked for.
# warm_worker, weights_dir, steps_per_execution and compile_cache say how this machine runs a job
# (never what it computes), so they travel as resources too: a change re-runs nothing.
TRAIN_RESOURCES = {
    "mem_mb": TRAIN_EXECUTION["mem_mb"],
    "runtime": TRAIN_EXECUTION["runtime"],
    "warm_worker": int(TRAIN_EXECUTION["warm_worker"]),
    "steps_per_execution": TRAIN_EXECUTION["steps_per_execution"],
}
if TRAIN_EXECUTION["jobs_per_gpu"] > 1:
    if TRAIN_EXECUTION["gpus"] != 1:
        raise WorkflowError(
            f"config execution.train.jobs_per_gpu is {TRAIN_EXECUTION['jobs_per_gpu']}: jobs share a GPU "
            f"only when each job has one (execution.train.gpus: 1, not {TRAIN_EXECUTION['gpus']})"
        )
    # A share of a GPU: a token for the local scheduler, a GRES shard for Slurm (its `gpu`
    # resource would give each job a whole GPU).
    TRAIN_RESOURCES["gpu_share"] = 1
    TRAIN_RESOURCES["gres"] = "shard:1"
    TRAIN_RESOURCES["jobs_per_gpu"] = TRAIN_EXECUTION["jobs_per_gpu"]
elif TRAIN_EXECUTION["gpus"]:
    TRAIN_RESOURCES["gpu"] = TRAIN_EXECUTION["gpus"]
if TRAIN_EXECUTION["slurm_extra"]:
    TRAIN_RESOURCES["slurm_extra"] = f"'{TRAIN_EXECUTION['slurm_extra']}'"
if TRAIN_EXECUTION["weights_dir"]:
    TRAIN_RESOURCES["weights_dir"] = TRAIN_EXECUTION["weights_dir"]
if TRAIN_EXECUTION["compile_cache"]:
    TRAIN_RESOURCES["compile_cache"] = TRAIN_EXECUTION["compile_cache"]


def train_job_dir(wildcards):
    return f"{TRAIN}/{wildcards.task}/{wildcards.backbone}/fold{wildcards.fold}"


def train_job_settings(wildcards):
    return job_settings(TRAIN_SETTINGS, TRAIN_TASKS[wildcards.task], wildcards.backbone)


def train_check_settings(wildcards):
    return check_settings(TRAIN_SETTINGS, TRAIN_TASKS[wildcards.task], wildcards.backbone)


# The rule output that writes each table a kind may read.
KIND_TABLES = {
    TARGETS: lambda: rules.crowd_targets.output.targets,
    CROWD_LABELS: lambda: rules.crowd_labels.output.labels,
    VOTES: lambda: rules.crowd_votes.output.votes,
    ANNOTATIONS: lambda: f"{DATA}/annotations.parquet",
}


def train_job_inputs(wildcards):
    kind = TRAIN_KINDS[wildcards.task]
    size = TRAIN_SIZES[wildcards.backbone]
    inputs = {
        "images": f"{DATA}/images.parquet",
        "folds": rules.split_folds.output.folds,
        "cache_array": f"{TRAIN}/cache/images_{size}px.npy",
        "cache_index": f"{TRAIN}/cache/images_{size}px.parquet",
        "cache_manifest": f"{TRAIN}/cache/images_{size}px.manifest.json",
        "experiment": rules.train_mlflow_init.output[0],
    }
    for table in sorted(kind.reads):
        inputs[table] = KIND_TABLES[table]()
    if CROWDSIM:
        # Every task leaves the crowd's candidate pool out of its expert training set; only the
        # kinds that read crowd labels train on them.
        inputs["crowd_pool"] = rules.crowd_pool.output.pool
    if kind.starts_from:
        inputs["base_model"] = (
            f"{TRAIN}/{kind.starts_from}/{wildcards.backbone}/fold{wildcards.fold}/model.keras"
        )
    if TRAIN_WEIGHTS_FILE:
        inputs["weights"] = TRAIN_WEIGHTS_FILE
    return inputs


def train_job_outputs(with_model, root=TRAIN, with_annotators=False):
    job = f"{root}/{{task}}/{{backbone}}/fold{{fold}}"
    outputs = {
        "predictions": f"{job}/predictions.parquet",
        "history": f"{job}/history.csv",
        "metrics": f"{job}/metrics.json",
    }
    if with_model:
        outputs["model"] = f"{job}/model.keras"
    if with_annotators:
        outputs["annotators"] = f"{job}/annotators.parquet"
    return outputs


def train_tasks_pattern(saved, annotated):
    """The grid's tasks of one training rule: with or without model.keras and annotators.parquet."""
    return tasks_pattern(
        [
            name
            for name in TRAIN_TASKS
            if (name in TRAIN_SAVED) == saved and (name in TRAIN_ANNOTATED) == annotated
        ]
    )


def tasks_pattern(names):
    # A pattern that matches nothing keeps a rule valid when no task falls under it.
    return "|".join(names) if names else "(?!)"


def train_predictions(task, backbone, fold):
    return f"{TRAIN}/{task}/{backbone}/fold{fold}/predictions.parquet"


# The shortcut trap's marker-free reference: the baseline trained, per fold, on the same lesions
# without the marker (the clean renderings), so that a marker's pull on a model has a measure to
# be judged against. A check job (outside the grid, nested under MLflow's `checks`).
CLEAN_REFERENCE = f"{TRAIN}/clean-reference"
CLEAN_REFERENCE_TASK = "baseline"
CLEAN_REFERENCE_METRICS = (
    [
        f"{CLEAN_REFERENCE}/{CLEAN_REFERENCE_TASK}/{backbone}/fold{fold}/metrics.json"
        for backbone in TRAIN_BACKBONES
        for fold in TRAIN_FOLDS
    ]
    if SHORTCUT
    else []
)


def clean_reference_inputs(wildcards):
    size = TRAIN_SIZES[wildcards.backbone]
    return {
        **train_job_inputs(wildcards),
        "images": f"{DATA}/images_clean.parquet",
        "cache_array": f"{TRAIN}/cache/clean_{size}px.npy",
        "cache_index": f"{TRAIN}/cache/clean_{size}px.parquet",
        "cache_manifest": f"{TRAIN}/cache/clean_{size}px.manifest.json",
    }


# --- evaluate -----------------------------------------------------------------------------
EVALUATE = config["evaluate"]
try:
    ENSEMBLE_PLAN = {
        e.name: e for e in plan_ensembles(list(TRAIN_TASKS.values()), TRAIN_BACKBONES, EVALUATE)
    }
except ValueError as error:
    raise WorkflowError(str(error)) from None
# Comparisons besides each model against the baseline, as each task's kind asks.
EXTRA_COMPARISONS = [
    list(pair)
    for pair in extra_comparisons(list(TRAIN_TASKS.values()), list(ENSEMBLE_PLAN.values()))
]
# Ensembles of several tasks (per backbone and over the backbones), and each task over the backbones.
GROUP_ENSEMBLES = [name for name in ENSEMBLE_PLAN if name not in TRAIN_TASKS]
BACKBONE_ENSEMBLES = [name for name in ENSEMBLE_PLAN if name in TRAIN_TASKS]
GROUP_ENSEMBLE_BACKBONES = ENSEMBLE_PLAN[GROUP_ENSEMBLES[0]].backbones if GROUP_ENSEMBLES else ()


def names_pattern(names):
    return "|".join(map(re.escape, names)) if names else "(?!)"


def ensemble_predictions(name, backbone, fold):
    return f"{ENSEMBLES}/{name}/{backbone}/fold{fold}/predictions.parquet"


def ensemble_outputs(backbones):
    return [
        ensemble_predictions("{ensemble}", backbone, fold)
        for backbone in backbones
        for fold in TRAIN_FOLDS
    ]


def ensemble_layout(wildcards):
    """Each output of one ensemble job -> its fold and the member predictions it averages."""
    ensemble = ENSEMBLE_PLAN[wildcards.ensemble]
    return {
        ensemble_predictions(ensemble.name, backbone, fold): {
            "fold": fold,
            "members": [
                train_predictions(task, member_backbone, fold)
                for task, member_backbone in ensemble.member_jobs(backbone, TRAIN_BACKBONES)
            ],
        }
        for backbone in ensemble.backbones
        for fold in TRAIN_FOLDS
    }


def ensemble_members(wildcards):
    return sorted(
        {path for layout in ensemble_layout(wildcards).values() for path in layout["members"]}
    )


def _scored_predictions():
    """Every prediction file the scores read, with the model, kind, source, backbone and fold it is
    (a task averaged over the backbones stays that task's row of the table)."""
    entries = []
    for task in TRAIN_TASKS.values():
        for backbone in TRAIN_BACKBONES:
            for fold in TRAIN_FOLDS:
                path = train_predictions(task.name, backbone, fold)
                entries.append((path, task.name, task.kind, task.source, backbone, fold))
    for ensemble in ENSEMBLE_PLAN.values():
        kind = TRAIN_TASKS[ensemble.name].kind if ensemble.name in TRAIN_TASKS else ENSEMBLE_KIND
        for backbone in ensemble.backbones:
            for fold in TRAIN_FOLDS:
                path = ensemble_predictions(ensemble.name, backbone, fold)
                entries.append((path, ensemble.name, kind, ensemble.source, backbone, fold))
    return entries


SCORED = _scored_predictions()
SCORED_FILES = [entry[0] for entry in SCORED]
SCORED_INDEX = [
    {"model": m, "kind": k, "source": s or "", "backbone": b, "fold": f}
    for _, m, k, s, b, f in SCORED
]
SCORED_BACKBONES = list(TRAIN_BACKBONES) + (
    [ALL_BACKBONES] if ALL_BACKBONES in GROUP_ENSEMBLE_BACKBONES or BACKBONE_ENSEMBLES else []
)
HISTORY_FILES = [
    f"{TRAIN}/{task}/{backbone}/fold{fold}/history.csv"
    for task in TRAIN_TASKS
    for backbone in TRAIN_BACKBONES
    for fold in TRAIN_FOLDS
]
HISTORY_INDEX = [
    {"task": task.name, "kind": task.kind, "backbone": backbone, "fold": fold}
    for task in TRAIN_TASKS.values()
    for backbone in TRAIN_BACKBONES
    for fold in TRAIN_FOLDS
]


# --- truth --------------------------------------------------------------------------------
# Only the synthetic default knows the answer (resources/synthetic/<run_name>/synthetic/truth/), so the truth checks
# exist where it is generated and nowhere else; the config decides, not a file on disk.
TRUTH_CHECKS = config["synthetic"]["enabled"]
# The detailed tables the summary judges, by name: results/truth/<name>.csv.
TRUTH_TABLES = [
    "automated",
    "annotations",
    "consensus",
    "ambiguity",
    "mturk_funnel",
    "dawid_skene",
    "auc",
    "spread_heads",
]
# The models with heads for the annotators' spread (disagreement-<source>): their test predictions
# against the drawn ambiguity.
_SPREAD_HEADS = [
    (
        train_predictions(name, backbone, fold),
        {"model": name, "source": task.source, "backbone": backbone},
    )
    for name, task in TRAIN_TASKS.items()
    if any(head.endswith(SPREAD_SUFFIX) for head in TRAIN_KINDS[name].heads(task))
    for backbone in TRAIN_BACKBONES
    for fold in TRAIN_FOLDS
]
SPREAD_HEAD_FILES = [path for path, _ in _SPREAD_HEADS]
# What the models that learn each annotator learned, per job, with the job it comes from.
_ANNOTATOR_JOBS = [
    (
        f"{TRAIN}/{name}/{backbone}/fold{fold}/annotators.parquet",
        {
            "model": name,
            "backbone": backbone,
            "fold": fold,
            "source": str(TRAIN_TASKS[name].source),
            "feature": str(TRAIN_TASKS[name].feature),
        },
    )
    for name in TRAIN_ANNOTATED
    for backbone in TRAIN_BACKBONES
    for fold in TRAIN_FOLDS
]
ANNOTATOR_FILES = [path for path, _ in _ANNOTATOR_JOBS]
ANNOTATOR_INDEX = [entry for _, entry in _ANNOTATOR_JOBS]
SPREAD_HEAD_INDEX = [entry for _, entry in _SPREAD_HEADS]


def truth_table(name):
    return f"{TRUTH}/{name}.csv"


# --- explain ------------------------------------------------------------------------------
# Grad-CAM of every model whose job keeps model.keras: one job per (task, backbone) over its folds.
EXPLAIN = f"{RESULTS}/explain"
EXPLAINED = (
    [(task, backbone) for task in TRAIN_SAVED for backbone in TRAIN_BACKBONES]
    if config["explain"]["enabled"]
    else []
)
EXPLAIN_FILES = [f"{EXPLAIN}/{task}/{backbone}/relevance.parquet" for task, backbone in EXPLAINED]
# The explanations' truth tables, where the baseline is explained (and the shortcut trap's, where
# it is drawn).
TRUTH_EXPLAIN_TABLES = (
    (["relevance"] + (["shortcut"] if SHORTCUT else []))
    if (CLEAN_REFERENCE_TASK, TRAIN_BACKBONES[0]) in EXPLAINED
    else []
)
TRUTH_TABLES += TRUTH_EXPLAIN_TABLES
TRUTH_TABLES += ["annotators"] if TRAIN_ANNOTATED else []
# The synthetic shortcut trap: its truth (and the clean and trap renderings beside it), generated
# with the data.
SHORTCUT_TRUTH = f"{RAW}/synthetic/truth/shortcut.csv"
# The ensembles whose shortcut scores average their members' (every member explained).
SHORTCUT_ENSEMBLES = {
    name: {
        backbone: [list(job) for job in ensemble.member_jobs(backbone, TRAIN_BACKBONES)]
        for backbone in ensemble.backbones
    }
    for name, ensemble in ENSEMBLE_PLAN.items()
}


def explain_inputs(wildcards, root=TRAIN, task=None, cache="images"):
    size = TRAIN_SIZES[wildcards.backbone]
    job = f"{root}/{task or wildcards.task}/{wildcards.backbone}"
    inputs = {
        "models": [f"{job}/fold{fold}/model.keras" for fold in TRAIN_FOLDS],
        "predictions": [f"{job}/fold{fold}/predictions.parquet" for fold in TRAIN_FOLDS],
        "images": f"{DATA}/images.parquet",
        "cache_array": f"{TRAIN}/cache/{cache}_{size}px.npy",
        "cache_index": f"{TRAIN}/cache/{cache}_{size}px.parquet",
        "cache_manifest": f"{TRAIN}/cache/{cache}_{size}px.manifest.json",
    }
    if SHORTCUT:
        inputs["shortcut"] = SHORTCUT_TRUTH
    return inputs


def clean_reference_explain_inputs(wildcards):
    return explain_inputs(wildcards, CLEAN_REFERENCE, CLEAN_REFERENCE_TASK, "clean")


CLEAN_REFERENCE_MODEL = "clean-reference"  # its name in the explanation's tables
CLEAN_REFERENCE_EXPLAINED = (
    [
        f"{EXPLAIN}/{CLEAN_REFERENCE_MODEL}/{backbone}/relevance.parquet"
        for backbone in TRAIN_BACKBONES
    ]
    if SHORTCUT and EXPLAINED
    else []
)

# The explanation gallery's candidates, {model, backbone, heads} each: the baseline and the
# explained models with annotation heads, never the randomized control. Which of them a backbone's
# figure shows depends on their AUC, known only once they are scored, so every candidate's files
# are inputs.
EXPLAIN_GALLERY = [c.to_dict() for c in gallery_candidates(TRAIN_TASKS.values(), EXPLAINED)]
EXPLAIN_GALLERY_FILES = {
    "maps": [f"{EXPLAIN}/{c['model']}/{c['backbone']}/maps.npz" for c in EXPLAIN_GALLERY],
    "relevance": [
        f"{EXPLAIN}/{c['model']}/{c['backbone']}/relevance.parquet" for c in EXPLAIN_GALLERY
    ],
    # one per candidate and fold, in that order
    "predictions": [
        train_predictions(c["model"], c["backbone"], fold)
        for c in EXPLAIN_GALLERY
        for fold in TRAIN_FOLDS
    ],
}


def explanation_figure(backbone):
    return f"{SCORES}/figures/explanations_{backbone}.png"


# --- report -------------------------------------------------------------------------------
def report_page(name, category, label):
    """An HTML table page of the report, with its caption in workflow/report/<name>.rst:
    `category` a key of crowdskin.report.CATEGORIES (Snakemake sorts categories by name, so they
    are numbered in the workflow's order), `label` the name a reader sees in place of the path."""
    return report(
        f"{REPORT}/{name}.html",
        caption=f"../report/{name}.rst",
        category=CATEGORIES[category],
        labels={"result": label},
    )


def report_table_inputs(wildcards):
    inputs = {
        **(
            {
                "relevance": f"{SCORES}/relevance.csv",
                "relevance_comparisons": f"{SCORES}/relevance_comparisons.csv",
            }
            if EXPLAINED
            else {}
        ),
        **(
            {
                "shortcut": f"{SCORES}/shortcut.csv",
                "shortcut_comparisons": f"{SCORES}/shortcut_comparisons.csv",
            }
            if EXPLAINED and SHORTCUT
            else {}
        ),
        "download_report": f"{DATA}/download_report.csv",
        "ingest_counts": f"{DATA}/ingest_counts.csv",
        "quarantine": f"{DATA}/quarantine.parquet",
        "automated": rules.automated_collect.output.wide,
        "funnel": rules.crowd_mturk_filter.output.funnel,
        "label_accuracy": rules.crowd_labels.output.accuracy,
        "annotation_counts": rules.crowd_analysis.output.counts,
        "label_correlation": rules.crowd_analysis.output.correlation,
        "source_agreement": rules.crowd_analysis.output.agreement,
        "disagreement": rules.crowd_disagreement.output.auc,
        "train_summary": rules.train_summary.output.summary,
        "auc_table": rules.scores.output.auc_table,
        "comparisons": rules.scores.output.comparisons,
        "auc_folds": rules.scores.output.auc_folds,
        "head_metrics": rules.scores.output.heads,
        "auc_summary": rules.scores.output.auc_summary,
    }
    if TRUTH_WORKERS:
        inputs["spammer_detection"] = rules.crowd_spammer_detection.output.detection
    if TRAIN_ANNOTATED:
        inputs["annotators"] = rules.annotators_summary.output.summary
        if TRUTH_CHECKS:
            inputs["annotator_workers"] = rules.truth_annotators.output.workers
    if TRUTH_CHECKS:
        inputs["truth_summary"] = rules.truth_summary.output.summary
        inputs["truth_workers"] = rules.truth_data.output.dawid_skene_workers
        inputs.update({f"truth_{name}": truth_table(name) for name in TRUTH_TABLES})
    return inputs


# The explanations' page, where the stage runs.
REPORT_EXPLAIN_PAGE = (
    {"explanations": report_page("explanations", "operating", "Where the models look")}
    if EXPLAINED
    else {}
)

# What the models that learn each annotator learned of them, where the grid has one.
REPORT_ANNOTATORS_PAGE = (
    {"annotators": report_page("annotators", "crowd", "Each annotator, learned by the network")}
    if TRAIN_ANNOTATED
    else {}
)

# The truth checks' page, only where they run.
REPORT_TRUTH_PAGE = (
    {"truth": report_page("truth", "checks", "Checks against the synthetic truth")}
    if TRUTH_CHECKS
    else {}
)

# The landing page's roles of models: the randomized control(s), the ensembles of several tasks,
# and CROWDSIM's models (those trained on crowd labels).
REPORT_ROLES = {
    "controls": [t.name for t in TRAIN_TASKS.values() if kind_of(t.kind).randomized_control],
    "ensembles": [name for name in ENSEMBLE_PLAN if name not in TRAIN_TASKS],
    "crowdsim": [t.name for t in TRAIN_TASKS.values() if CROWD_LABELS in kind_of(t.kind).reads],
}


# What the report shows of the config: everything that can change a result.
REPORT_CONFIG = {key: value for key, value in config.items() if key != "execution"}


# Operating characteristics: an ensemble's threshold comes from its members' validation scores
# averaged as its test scores are: each (ensemble, backbone) with its members.
OPERATING_ENSEMBLES = [
    {
        "model": ensemble.name,
        "backbone": backbone,
        "members": [list(job) for job in ensemble.member_jobs(backbone, TRAIN_BACKBONES)],
    }
    for ensemble in ENSEMBLE_PLAN.values()
    for backbone in ensemble.backbones
]


def gallery_figure(backbone):
    return f"{SCORES}/figures/gallery_{backbone}.png"


# Every figure of the report, shown as a page of its own (the figure under its caption, in a frame
# that scrolls: Snakemake centres an image in the window, and one taller than the window loses its
# top): name -> (PNG, category, the name a reader sees, its caption workflow/report/<caption>.rst).
REPORT_FIGURES = {
    "source_agreement": (
        f"{ANALYSIS}/source_agreement.png",
        "annotations",
        "Agreement between sources",
        "source_agreement",
    ),
    "raincloud": (
        f"{ANALYSIS}/raincloud.png",
        "annotations",
        "Annotation scores per source",
        "raincloud",
    ),
    "mturk_funnel": (
        f"{SCORES}/figures/mturk_funnel.png",
        "crowd",
        "MTurk filtering funnel",
        "mturk_funnel",
    ),
    "training_curves": (
        f"{SCORES}/figures/training_curves.png",
        "training",
        "Training curves",
        "training_curves",
    ),
    "forest": (
        f"{SCORES}/figures/forest.png",
        "models",
        "Comparisons (forest plot)",
        "forest",
    ),
    "roc": (
        f"{SCORES}/figures/roc.png",
        "models",
        "ROC curves, pooled over the folds",
        "roc",
    ),
    "fold_auc": (f"{SCORES}/figures/fold_auc.png", "models", "AUC per fold", "fold_auc"),
    "heads_scatter": (
        f"{SCORES}/figures/heads_scatter.png",
        "training",
        "What the annotation heads learned",
        "heads_scatter",
    ),
    "calibration": (
        f"{SCORES}/figures/calibration.png",
        "operating",
        "Reliability diagram and Brier score",
        "calibration",
    ),
    "operating_point": (
        f"{SCORES}/figures/operating_point.png",
        "operating",
        "Operating point: sensitivity and specificity",
        "operating_point",
    ),
    "fold_roc": (
        f"{SCORES}/figures/fold_roc.png",
        "operating",
        "ROC curves per fold",
        "fold_roc",
    ),
    **{
        f"gallery_{backbone}": (
            gallery_figure(backbone),
            "operating",
            f"Lesion gallery ({'all backbones' if backbone == ALL_BACKBONES else backbone})",
            "gallery",
        )
        for backbone in SCORED_BACKBONES
    },
    **(
        {
            "relevance": (
                f"{SCORES}/figures/relevance.png",
                "operating",
                "Where the models look: relevance mass in the lesion",
                "relevance",
            )
        }
        if EXPLAINED
        else {}
    ),
    **{
        f"explanations_{backbone}": (
            explanation_figure(backbone),
            "operating",
            f"Where the models look: {backbone}",
            "explanation_gallery",
        )
        for backbone in (TRAIN_BACKBONES if EXPLAINED else [])
    },
}
# What a figure's caption may name of the run ({{ run_name }}): more would re-make every page when
# any of it changed.
REPORT_CAPTION_VALUES = {"run_name": RUN_NAME}

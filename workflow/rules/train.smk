# The train stage (issue 5): folds, image cache, one job per (task, backbone, fold), summary.
# The grid comes from config alone (crowdskin.train.tasks), never from globbing data, so the DAG of
# config/paper.yaml is built before anything is downloaded.
from crowdskin.train.settings import section as train_section, split_seed
from crowdskin.train.tasks import input_size as train_input_size, task_grid

SPLITS = "results/splits"
TRAIN = "results/train"
CROWD_TARGETS = rules.crowd_targets.output.targets
CROWD_LABELS = rules.crowd_labels.output.labels
SPLIT_SETTINGS = train_section(config, "split")
TRAIN_SETTINGS = train_section(config, "train")
TRAIN_TASKS = {task.name: task for task in task_grid(TRAIN_SETTINGS)}
TRAIN_BACKBONES = TRAIN_SETTINGS["backbones"]
TRAIN_FOLDS = list(range(SPLIT_SETTINGS["n_folds"]))
TRAIN_SIZES = {backbone: train_input_size(TRAIN_SETTINGS, backbone) for backbone in TRAIN_BACKBONES}
CROWDSIM = TRAIN_SETTINGS["crowdsim"]["enabled"]
if CROWDSIM and TRAIN_SETTINGS["save_model"] == "none":
    raise WorkflowError("train.crowdsim needs train.save_model all or needed (crowdsim-incremental fine-tunes the saved baseline)")
# Tasks whose job writes model.keras; the others are a second rule without that output.
TRAIN_SAVED = [
    name for name in TRAIN_TASKS
    if TRAIN_SETTINGS["save_model"] == "all" or (TRAIN_SETTINGS["save_model"] == "needed" and CROWDSIM and name == "baseline")
]

# Slurm and the local scheduler read the same declarations; `gpu` only where GPUs are asked for.
TRAIN_RESOURCES = {"mem_mb": TRAIN_SETTINGS["mem_mb"], "runtime": TRAIN_SETTINGS["runtime"]}
if TRAIN_SETTINGS["gpus"]:
    TRAIN_RESOURCES["gpu"] = TRAIN_SETTINGS["gpus"]
if TRAIN_SETTINGS["slurm_extra"]:
    TRAIN_RESOURCES["slurm_extra"] = f"'{TRAIN_SETTINGS['slurm_extra']}'"

localrules:
    train_mlflow_init,
    train_summary,


rule split_folds:
    input:
        images=f"{DATA}/images.parquet",
    output:
        folds=f"{SPLITS}/folds.parquet",
        skipped=f"{SPLITS}/skipped.csv",
    params:
        split=SPLIT_SETTINGS,
        seed=split_seed(config),
    log:
        f"{LOGS}/split_folds.log",
    script:
        script_path("split_folds.py")


rule train_cache:
    input:
        images=f"{DATA}/images.parquet",
        folds=f"{SPLITS}/folds.parquet",
    output:
        array=f"{TRAIN}/cache/images_{{size}}px.npy",
        index=f"{TRAIN}/cache/images_{{size}}px.parquet",
    wildcard_constraints:
        size=r"\d+",
    threads: 2
    resources:
        # the array of up to ~4000 images (ISIC 2017 + PH2 + candidates) plus the interpreter
        mem_mb=lambda wildcards: 1000 + 3 * int(wildcards.size) ** 2 * 4000 // 2**20,
        runtime=60,
    log:
        f"{LOGS}/train_cache_{{size}}px.log",
    script:
        script_path("train_cache.py")


rule train_mlflow_init:
    output:
        f"{TRAIN}/mlflow_experiment.json",
    params:
        experiment=config["run_name"],
        tracking_uri=config.get("mlflow", {}).get("tracking_uri"),
    log:
        f"{LOGS}/train_mlflow_init.log",
    script:
        script_path("train_mlflow_init.py")


def train_job_inputs(wildcards):
    task = TRAIN_TASKS[wildcards.task]
    size = TRAIN_SIZES[wildcards.backbone]
    inputs = {
        "images": f"{DATA}/images.parquet",
        "folds": f"{SPLITS}/folds.parquet",
        "cache_array": f"{TRAIN}/cache/images_{size}px.npy",
        "cache_index": f"{TRAIN}/cache/images_{size}px.parquet",
        "experiment": f"{TRAIN}/mlflow_experiment.json",
    }
    if task.kind == "multitask":
        inputs["targets"] = CROWD_TARGETS
    if CROWDSIM:
        # Every task leaves the crowd-labelled candidates out of its expert training set.
        inputs["crowd_labels"] = CROWD_LABELS
    if task.kind == "crowdsim-incremental":
        inputs["base_model"] = f"{TRAIN}/baseline/{wildcards.backbone}/fold{wildcards.fold}/model.keras"
    return inputs


def train_job_outputs(with_model):
    job = f"{TRAIN}/{{task}}/{{backbone}}/fold{{fold}}"
    outputs = {
        "predictions": f"{job}/predictions.parquet",
        "history": f"{job}/history.csv",
        "metrics": f"{job}/metrics.json",
    }
    if with_model:
        outputs["model"] = f"{job}/model.keras"
    return outputs


TRAIN_JOB_PARAMS = {
    "train": TRAIN_SETTINGS,
    "seed": config["seed"],
    "worker_log": f"{LOGS}/train_worker.log",
    "out_dir": lambda wildcards: f"{TRAIN}/{wildcards.task}/{wildcards.backbone}/fold{wildcards.fold}",
}


def tasks_pattern(names):
    # A pattern that matches nothing keeps a rule valid when no task falls under it.
    return "|".join(names) if names else "(?!)"


rule train_job:
    input:
        unpack(train_job_inputs),
    output:
        **train_job_outputs(with_model=True),
    wildcard_constraints:
        task=tasks_pattern(TRAIN_SAVED),
        backbone="|".join(TRAIN_BACKBONES),
        fold=r"\d+",
    params:
        **TRAIN_JOB_PARAMS,
        save_model=True,
    threads: TRAIN_SETTINGS["threads"]
    resources:
        **TRAIN_RESOURCES,
    log:
        f"{LOGS}/train/{{task}}/{{backbone}}/fold{{fold}}.log",
    script:
        script_path("train_job.py")


use rule train_job as train_job_without_model with:
    output:
        **train_job_outputs(with_model=False),
    wildcard_constraints:
        task=tasks_pattern([name for name in TRAIN_TASKS if name not in TRAIN_SAVED]),
        backbone="|".join(TRAIN_BACKBONES),
        fold=r"\d+",
    params:
        **TRAIN_JOB_PARAMS,
        save_model=False,


TRAIN_METRICS = expand(
    f"{TRAIN}/{{task}}/{{backbone}}/fold{{fold}}/metrics.json",
    task=list(TRAIN_TASKS),
    backbone=TRAIN_BACKBONES,
    fold=TRAIN_FOLDS,
)


rule train_summary:
    input:
        TRAIN_METRICS,
    output:
        runs=f"{TRAIN}/runs.csv",
        summary=f"{TRAIN}/summary.csv",
    log:
        f"{LOGS}/train_summary.log",
    script:
        script_path("train_summary.py")


ALL_TARGETS += [f"{SPLITS}/folds.parquet", f"{TRAIN}/runs.csv", f"{TRAIN}/summary.csv"]

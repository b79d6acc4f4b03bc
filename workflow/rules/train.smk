# The train stage: folds, image cache, one job per (task, backbone, fold), summary.
# The grid comes from config alone (crowdskin.train.tasks), never from globbing data, so the DAG of
# config/paper.yaml is built before anything is downloaded. A job's params are its science settings
# (crowdskin.train.settings.job_settings); threads, GPUs, memory and time come from `execution`.


localrules:
    train_mlflow_init,
    train_summary,


rule split_folds:
    input:
        images=f"{DATA}/images.parquet",
    output:
        folds=f"{SPLITS}/folds.parquet",
        skipped=f"{SPLITS}/skipped.csv",
    log:
        f"{LOGS}/split_folds.log",
    params:
        scheme=config["split"]["scheme"],
        n_folds=config["split"]["n_folds"],
        # Decides whether the folds are accepted: a raised minimum must re-check them.
        min_positives_per_fold=config["split"]["min_positives_per_fold"],
        seed=split_seed(config),
    script:
        script_path("split_folds.py")


rule train_cache:
    input:
        images=f"{DATA}/images.parquet",
        folds=rules.split_folds.output.folds,
        # the image files it decodes, as their fetch markers stand for them
        raw=fetched_markers(),
    output:
        array=f"{TRAIN}/cache/images_{{size}}px.npy",
        index=f"{TRAIN}/cache/images_{{size}}px.parquet",
        manifest=f"{TRAIN}/cache/images_{{size}}px.manifest.json",
    log:
        f"{LOGS}/train_cache_{{size}}px.log",
    wildcard_constraints:
        size=r"\d+",
    threads: 2
    resources:
        # the array of up to ~4000 images (ISIC 2017 + PH2 + candidates) plus the interpreter
        mem_mb=lambda wildcards: 1000 + 3 * int(wildcards.size) ** 2 * 4000 // 2**20,
        runtime=60,
    script:
        script_path("train_cache.py")


rule train_mlflow_init:
    output:
        f"{TRAIN}/mlflow_experiment.json",
    log:
        f"{LOGS}/train_mlflow_init.log",
    params:
        experiment=config["run_name"],
        tracking_uri=config["mlflow"]["tracking_uri"],
        # The default (the working directory) is no setting: decided at the first run and kept in the
        # output, it survives a move of the directory without re-running anything.
        run_namespace=config["mlflow"]["run_namespace"],
    script:
        script_path("train_mlflow_init.py")


rule train_job:
    input:
        unpack(train_job_inputs),
    output:
        **train_job_outputs(with_model=True),
    log:
        f"{LOGS}/train/{{task}}/{{backbone}}/fold{{fold}}.log",
    wildcard_constraints:
        task=train_tasks_pattern(saved=True, annotated=False),
        backbone="|".join(TRAIN_BACKBONES),
        fold=r"\d+",
    threads: TRAIN_EXECUTION["threads"]
    resources:
        **TRAIN_RESOURCES,
    params:
        settings=train_job_settings,
        seed=config["seed"],
        split_scheme=config["split"]["scheme"],
        out_dir=train_job_dir,
        worker_log=f"{LOGS}/train_worker.log",
        save_model=True,
        check=False,
    script:
        script_path("train_job.py")


use rule train_job as train_job_without_model with:
    output:
        **train_job_outputs(with_model=False),
    wildcard_constraints:
        task=train_tasks_pattern(saved=False, annotated=False),
        backbone="|".join(TRAIN_BACKBONES),
        fold=r"\d+",
    params:
        settings=train_job_settings,
        seed=config["seed"],
        split_scheme=config["split"]["scheme"],
        out_dir=train_job_dir,
        worker_log=f"{LOGS}/train_worker.log",
        save_model=False,
        check=False,


# The models that learn each annotator also write what they learned of them (annotators.parquet).
use rule train_job as train_annotator_job with:
    output:
        **train_job_outputs(with_model=True, with_annotators=True),
    wildcard_constraints:
        task=train_tasks_pattern(saved=True, annotated=True),
        backbone="|".join(TRAIN_BACKBONES),
        fold=r"\d+",


use rule train_job_without_model as train_annotator_job_without_model with:
    output:
        **train_job_outputs(with_model=False, with_annotators=True),
    wildcard_constraints:
        task=train_tasks_pattern(saved=False, annotated=True),
        backbone="|".join(TRAIN_BACKBONES),
        fold=r"\d+",


# One tiny job per backbone_checks entry: the code path of a backbone the grid does not train.
use rule train_job as train_backbone_check with:
    output:
        **train_job_outputs(with_model=False, root=TRAIN_CHECKS),
    log:
        f"{LOGS}/train/checks/{{task}}/{{backbone}}/fold{{fold}}.log",
    wildcard_constraints:
        task="baseline",
        backbone=names_pattern(TRAIN_CHECK_BACKBONES),
        fold="0",
    params:
        settings=train_check_settings,
        seed=config["seed"],
        split_scheme=config["split"]["scheme"],
        out_dir=lambda wildcards: f"{TRAIN_CHECKS}/{wildcards.task}/{wildcards.backbone}/fold{wildcards.fold}",
        worker_log=f"{LOGS}/train_worker.log",
        save_model=False,
        check=True,


TRAIN_CHECK_METRICS = (
    expand(
        f"{TRAIN_CHECKS}/baseline/{{backbone}}/fold0/metrics.json", backbone=TRAIN_CHECK_BACKBONES
    )
    + CLEAN_REFERENCE_METRICS
)


if SHORTCUT:

    # The shortcut trap's images without the marker: the images table pointing at the clean
    # renderings that the generator writes beside its truth.
    rule shortcut_clean_images:
        input:
            images=f"{DATA}/images.parquet",
            shortcut=SHORTCUT_TRUTH,
        output:
            images=f"{DATA}/images_clean.parquet",
        log:
            f"{LOGS}/shortcut_clean_images.log",
        script:
            script_path("shortcut_clean_images.py")

    use rule train_cache as train_cache_clean with:
        input:
            images=rules.shortcut_clean_images.output.images,
            folds=rules.split_folds.output.folds,
            raw=fetched_markers(),
        output:
            array=f"{TRAIN}/cache/clean_{{size}}px.npy",
            index=f"{TRAIN}/cache/clean_{{size}}px.parquet",
            manifest=f"{TRAIN}/cache/clean_{{size}}px.manifest.json",
        log:
            f"{LOGS}/train_cache_clean_{{size}}px.log",

    use rule train_job as train_clean_reference with:
        input:
            unpack(clean_reference_inputs),
        output:
            **train_job_outputs(with_model=True, root=CLEAN_REFERENCE),
        log:
            f"{LOGS}/train/clean-reference/{{task}}/{{backbone}}/fold{{fold}}.log",
        wildcard_constraints:
            task=CLEAN_REFERENCE_TASK,
            backbone="|".join(TRAIN_BACKBONES),
            fold=r"\d+",
        params:
            settings=train_job_settings,
            seed=config["seed"],
            split_scheme=config["split"]["scheme"],
            out_dir=lambda wildcards: f"{CLEAN_REFERENCE}/{wildcards.task}/{wildcards.backbone}/fold{wildcards.fold}",
            worker_log=f"{LOGS}/train_worker.log",
            save_model=True,
            check=True,


TRAIN_METRICS = expand(
    f"{TRAIN}/{{task}}/{{backbone}}/fold{{fold}}/metrics.json",
    task=list(TRAIN_TASKS),
    backbone=TRAIN_BACKBONES,
    fold=TRAIN_FOLDS,
)


# Local: it also logs the MLflow runs that cluster jobs left in their metrics.json (a SQLite store
# is written from this machine only), reading each job's history.csv and predictions as artifacts.
rule train_summary:
    input:
        grid=TRAIN_METRICS,
        checks=TRAIN_CHECK_METRICS,
        artifacts=[
            str(Path(path).with_name(name))
            for path in TRAIN_METRICS + TRAIN_CHECK_METRICS
            for name in ("history.csv", "predictions.parquet")
        ],
        experiment=rules.train_mlflow_init.output[0],
    output:
        runs=f"{TRAIN}/runs.csv",
        summary=f"{TRAIN}/summary.csv",
    log:
        f"{LOGS}/train_summary.log",
    script:
        script_path("train_summary.py")


ALL_TARGETS += [
    rules.split_folds.output.folds,
    rules.train_summary.output.runs,
    rules.train_summary.output.summary,
    *TRAIN_CHECK_METRICS,
]

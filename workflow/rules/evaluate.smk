# The evaluation stage: ensembles, scores with their statistics, figures, MLflow comparisons.
# Every job here averages or tabulates small tables, so all run on the submitting machine (a
# cluster job's queueing would cost more than the work). One ensemble job covers every backbone
# and fold of one ensemble: its members are the only inputs, so it re-runs when one of them does.


localrules:
    ensemble,
    ensemble_over_backbones,
    scores,
    figures,
    mlflow_comparisons,


rule ensemble:
    input:
        members=ensemble_members,
        folds=rules.split_folds.output.folds,
    output:
        ensemble_outputs(GROUP_ENSEMBLE_BACKBONES),
    log:
        f"{LOGS}/ensemble/{{ensemble}}.log",
    wildcard_constraints:
        ensemble=names_pattern(GROUP_ENSEMBLES),
    params:
        layout=ensemble_layout,
    script:
        script_path("evaluate_ensemble.py")


use rule ensemble as ensemble_over_backbones with:
    output:
        ensemble_outputs([ALL_BACKBONES]),
    wildcard_constraints:
        ensemble=names_pattern(BACKBONE_ENSEMBLES),


rule scores:
    input:
        predictions=SCORED_FILES,
        folds=rules.split_folds.output.folds,
    output:
        auc_folds=f"{SCORES}/auc_folds.csv",
        auc_summary=f"{SCORES}/auc_summary.csv",
        auc_table=f"{SCORES}/auc_table.csv",
        auc_table_md=f"{SCORES}/auc_table.md",
        comparisons=f"{SCORES}/comparisons.csv",
        roc=f"{SCORES}/roc.csv",
        heads=f"{SCORES}/head_metrics.csv",
        metrics=f"{SCORES}/metrics.json",
    log:
        f"{LOGS}/scores.log",
    params:
        index=SCORED_INDEX,
        backbones=SCORED_BACKBONES,
        scheme=config["split"]["scheme"],
        bootstrap=EVALUATE["bootstrap"],
        seed=config["seed"],
        extra_comparisons=EXTRA_COMPARISONS,
    script:
        script_path("evaluate_scores.py")


if TRAIN_ANNOTATED:

    # What the models that learn each annotator learned of them, averaged over the folds.
    rule annotators_summary:
        input:
            learned=ANNOTATOR_FILES,
        output:
            summary=f"{SCORES}/annotators.csv",
        log:
            f"{LOGS}/annotators_summary.log",
        params:
            index=ANNOTATOR_INDEX,
        script:
            script_path("evaluate_annotators.py")

    ALL_TARGETS += [*rules.annotators_summary.output]


rule figures:
    input:
        auc_folds=rules.scores.output.auc_folds,
        auc_summary=rules.scores.output.auc_summary,
        comparisons=rules.scores.output.comparisons,
        roc=rules.scores.output.roc,
        funnel=rules.crowd_mturk_filter.output.funnel,
        histories=HISTORY_FILES,
    output:
        roc=f"{SCORES}/figures/roc.png",
        forest=f"{SCORES}/figures/forest.png",
        folds=f"{SCORES}/figures/fold_auc.png",
        training=f"{SCORES}/figures/training_curves.png",
        funnel=f"{SCORES}/figures/mturk_funnel.png",
    log:
        f"{LOGS}/figures.log",
    params:
        history_index=HISTORY_INDEX,
        controls=REPORT_ROLES["controls"],
    script:
        script_path("evaluate_figures.py")


rule mlflow_comparisons:
    input:
        auc_summary=rules.scores.output.auc_summary,
        comparisons=rules.scores.output.comparisons,
        runs=rules.train_summary.output.runs,
        experiment=rules.train_mlflow_init.output[0],
    output:
        f"{SCORES}/mlflow_runs.csv",
    log:
        f"{LOGS}/mlflow_comparisons.log",
    params:
        members={name: list(e.members) for name, e in ENSEMBLE_PLAN.items()},
    script:
        script_path("evaluate_mlflow.py")


ALL_TARGETS += [
    *rules.scores.output,
    *rules.figures.output,
    rules.mlflow_comparisons.output[0],
]


# The lesion gallery: a few PNGs of thumbnails from tables already in memory, a few seconds.
localrules:
    gallery,


rule gallery:
    input:
        auc_summary=rules.scores.output.auc_summary,
        # every model's predictions, as the scores read them: which model is best is known only
        # once they are scored
        predictions=SCORED_FILES,
        images=rules.ingest.output.images,
        targets=rules.crowd_targets.output.targets,
        # The image and mask files of the chosen lesions are known only after scoring, and a DAG
        # cannot wait on them without a checkpoint; their fetch markers stand for every file that
        # the images table names, as they do for the image cache of training.
        raw=fetched_markers(),
    output:
        [gallery_figure(backbone) for backbone in SCORED_BACKBONES],
    log:
        f"{LOGS}/gallery.log",
    params:
        index=SCORED_INDEX,
        backbones=SCORED_BACKBONES,
        gallery=EVALUATE["gallery"],
    script:
        script_path("evaluate_gallery.py")


ALL_TARGETS += [*rules.gallery.output]


localrules:
    operating_characteristics,


rule operating_characteristics:
    input:
        predictions=SCORED_FILES,
        folds=rules.split_folds.output.folds,
    output:
        calibration=f"{SCORES}/calibration.csv",
        brier=f"{SCORES}/brier.csv",
        operating=f"{SCORES}/operating_point.csv",
        fold_roc=f"{SCORES}/fold_roc.csv",
        head_points=f"{SCORES}/head_points.csv",
        calibration_figure=f"{SCORES}/figures/calibration.png",
        operating_figure=f"{SCORES}/figures/operating_point.png",
        fold_roc_figure=f"{SCORES}/figures/fold_roc.png",
        heads_figure=f"{SCORES}/figures/heads_scatter.png",
    log:
        f"{LOGS}/operating_characteristics.log",
    params:
        index=SCORED_INDEX,
        ensembles=OPERATING_ENSEMBLES,
        scheme=config["split"]["scheme"],
        bootstrap=EVALUATE["bootstrap"],
        seed=config["seed"],
    script:
        script_path("evaluate_operating.py")


ALL_TARGETS += [*rules.operating_characteristics.output]

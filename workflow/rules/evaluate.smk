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
        ensemble_members,
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
        SCORED_FILES,
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


rule figures:
    input:
        auc_folds=rules.scores.output.auc_folds,
        auc_summary=rules.scores.output.auc_summary,
        comparisons=rules.scores.output.comparisons,
        roc=rules.scores.output.roc,
        funnel=rules.crowd_mturk_filter.output.funnel,
        histories=HISTORY_FILES,
    output:
        roc=report(
            f"{SCORES}/figures/roc.png",
            caption="../report/roc.rst",
            category="Ensembles and statistics",
        ),
        forest=report(
            f"{SCORES}/figures/forest.png",
            caption="../report/forest.rst",
            category="Ensembles and statistics",
        ),
        folds=report(
            f"{SCORES}/figures/fold_auc.png",
            caption="../report/fold_auc.rst",
            category="Ensembles and statistics",
        ),
        training=report(
            f"{SCORES}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        funnel=report(
            f"{SCORES}/figures/mturk_funnel.png",
            caption="../report/mturk_funnel.rst",
            category="Crowd layer",
        ),
    log:
        f"{LOGS}/figures.log",
    params:
        history_index=HISTORY_INDEX,
    script:
        script_path("evaluate_figures.py")


rule mlflow_comparisons:
    input:
        auc_summary=rules.scores.output.auc_summary,
        auc_folds=rules.scores.output.auc_folds,
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


# Operating characteristics: calibration, an operating point chosen on validation, per-fold ROC
# curves and the annotation heads' scatter. An ensemble's threshold comes from its members'
# validation scores averaged as its test scores are: each (ensemble, backbone) with its members.
OPERATING_ENSEMBLES = [
    {
        "model": ensemble.name,
        "backbone": backbone,
        "members": [list(job) for job in ensemble.member_jobs(backbone, TRAIN_BACKBONES)],
    }
    for ensemble in ENSEMBLE_PLAN.values()
    for backbone in ensemble.backbones
]


localrules:
    operating_characteristics,


rule operating_characteristics:
    input:
        SCORED_FILES,
    output:
        calibration=f"{SCORES}/calibration.csv",
        brier=f"{SCORES}/brier.csv",
        operating=f"{SCORES}/operating_point.csv",
        fold_roc=f"{SCORES}/fold_roc.csv",
        head_points=f"{SCORES}/head_points.csv",
        calibration_figure=report(
            f"{SCORES}/figures/calibration.png",
            caption="../report/calibration.rst",
            category="6 Operating characteristics",
            labels={"figure": "Reliability diagram and Brier score"},
        ),
        operating_figure=report(
            f"{SCORES}/figures/operating_point.png",
            caption="../report/operating_point.rst",
            category="6 Operating characteristics",
            labels={"figure": "Operating point: sensitivity and specificity"},
        ),
        fold_roc_figure=report(
            f"{SCORES}/figures/fold_roc.png",
            caption="../report/fold_roc.rst",
            category="6 Operating characteristics",
            labels={"figure": "ROC curves per fold"},
        ),
        heads_figure=report(
            f"{SCORES}/figures/heads_scatter.png",
            caption="../report/heads_scatter.rst",
            category="4 Training",
            labels={"figure": "What the annotation heads learned"},
        ),
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

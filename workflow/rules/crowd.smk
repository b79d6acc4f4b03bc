# The crowd stage: consensus targets, the MTurk filtering funnel, crowd labels, and the studies'
# annotation analyses. Logic: src/crowdskin/crowd/. Each rule's params are the crowd settings it reads.


rule crowd_targets:
    input:
        images=f"{DATA}/images.parquet",
        annotations=crowd_annotation_inputs,
    output:
        targets=f"{CROWD}/targets.parquet",
    log:
        f"{LOGS}/crowd/targets.log",
    threads: 1
    resources:
        mem_mb=2000,
    params:
        features=CROWD_SETTINGS["target_features"],
        multi_group=CROWD_SETTINGS["multi_group"],
    script:
        script_path("crowd_targets.py")


rule crowd_mturk_filter:
    input:
        assignments=f"{DATA}/mturk_assignments.parquet",
        quarantine=f"{DATA}/quarantine.parquet",
        # the MTurk exports it reads to count workers and HITs, as their fetch markers stand for them
        raw=fetched_markers(),
    output:
        decisions=f"{CROWD}/mturk_decisions.parquet",
        kept=f"{CROWD}/mturk_kept.parquet",
        funnel=f"{CROWD}/mturk_funnel.csv",
    log:
        f"{LOGS}/crowd/mturk_filter.log",
    threads: 1
    resources:
        mem_mb=1000,
    params:
        mturk=CROWD_SETTINGS["mturk"],
    script:
        script_path("crowd_mturk.py")


# The candidate images of every ingested MTurk task, before the funnel: what the expert-only tasks
# leave out of training. No filter setting reaches it, so a filter change re-trains only crowdsim.
rule crowd_pool:
    input:
        assignments=f"{DATA}/mturk_assignments.parquet",
    output:
        pool=f"{CROWD}/crowd_pool.parquet",
    log:
        f"{LOGS}/crowd/pool.log",
    script:
        script_path("crowd_pool.py")


rule crowd_labels:
    input:
        kept=rules.crowd_mturk_filter.output.kept,
        assignments=f"{DATA}/mturk_assignments.parquet",
        images=f"{DATA}/images.parquet",
    output:
        labels=f"{CROWD}/crowd_labels.parquet",
        accuracy=f"{CROWD}/crowd_label_accuracy.csv",
        # the reliability the same fit gives each worker: the weights behind the labels
        workers=f"{CROWD}/worker_reliability.csv",
    log:
        f"{LOGS}/crowd/labels.log",
    threads: 1
    resources:
        mem_mb=1000,
    params:
        method=CROWD_SETTINGS["labels"]["method"],
        n_iter=CROWD_SETTINGS["labels"]["n_iter"],
    script:
        script_path("crowd_labels.py")


# Every usable MTurk vote with its worker: what the models that learn each worker train on.
rule crowd_votes:
    input:
        decisions=rules.crowd_mturk_filter.output.decisions,
    output:
        votes=f"{CROWD}/votes.parquet",
    log:
        f"{LOGS}/crowd/votes.log",
    threads: 1
    resources:
        mem_mb=1000,
    params:
        method=CROWD_SETTINGS["labels"]["method"],
        n_iter=CROWD_SETTINGS["labels"]["n_iter"],
    script:
        script_path("crowd_votes.py")


rule crowd_analysis:
    input:
        images=f"{DATA}/images.parquet",
        annotations=crowd_annotation_inputs,
        targets=rules.crowd_targets.output.targets,
    output:
        counts=f"{ANALYSIS}/annotation_counts.csv",
        correlation=f"{ANALYSIS}/label_correlation.csv",
        agreement=f"{ANALYSIS}/source_agreement.csv",
        agreement_figure=f"{ANALYSIS}/source_agreement.png",
        raincloud=f"{ANALYSIS}/raincloud.png",
    log:
        f"{LOGS}/crowd/analysis.log",
    threads: 1
    resources:
        mem_mb=2000,
    params:
        seed=config["seed"],  # the raincloud's jitter
    script:
        script_path("crowd_analysis.py")


rule crowd_disagreement:
    input:
        images=f"{DATA}/images.parquet",
        annotations=crowd_annotation_inputs,
    output:
        auc=f"{ANALYSIS}/disagreement_auc.csv",
    log:
        f"{LOGS}/crowd/disagreement.log",
    threads: 1
    resources:
        mem_mb=2000,
    params:
        experiments=CROWD_SETTINGS["disagreement"]["experiments"],
        folds=CROWD_SETTINGS["disagreement"]["folds"],
        seed=config["seed"],
    script:
        script_path("crowd_disagreement.py")


ALL_TARGETS += [
    rules.crowd_targets.output.targets,
    rules.crowd_mturk_filter.output.funnel,
    rules.crowd_labels.output.labels,
    rules.crowd_analysis.output.correlation,
    rules.crowd_disagreement.output.auc,
]

if TRUTH_WORKERS:

    # How well the MTurk rules reject the simulation's spammers (the synthetic default only).
    rule crowd_spammer_detection:
        input:
            decisions=rules.crowd_mturk_filter.output.decisions,
            workers=TRUTH_WORKERS,
        output:
            detection=f"{CROWD}/spammer_detection.csv",
        log:
            f"{LOGS}/crowd/spammer_detection.log",
        threads: 1
        params:
            mturk_rules=CROWD_SETTINGS["mturk"]["rules"],
        script:
            script_path("crowd_spammers.py")

    ALL_TARGETS += [rules.crowd_spammer_detection.output.detection]

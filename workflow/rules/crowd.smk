# The crowd stage's rules (issue 4): consensus targets, the MTurk filtering funnel, crowd labels,
# and the studies' annotation analyses. Logic: src/crowdskin/crowd/.
CROWD = "results/crowd"
ANALYSIS = "results/analysis"
AUTOMATED_ANNOTATIONS = rules.automated_collect.output.long


def crowd_annotation_inputs(wildcards):
    paths = [f"{DATA}/annotations.parquet"]
    if config["crowd"]["use_automated"]:
        paths.append(AUTOMATED_ANNOTATIONS)
    return paths


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
    script:
        script_path("crowd_targets.py")


rule crowd_mturk_filter:
    input:
        assignments=f"{DATA}/mturk_assignments.parquet",
        quarantine=f"{DATA}/quarantine.parquet",
    output:
        decisions=f"{CROWD}/mturk_decisions.parquet",
        kept=f"{CROWD}/mturk_kept.parquet",
        funnel=f"{CROWD}/mturk_funnel.csv",
    log:
        f"{LOGS}/crowd/mturk_filter.log",
    threads: 1
    resources:
        mem_mb=1000,
    script:
        script_path("crowd_mturk.py")


rule crowd_labels:
    input:
        kept=f"{CROWD}/mturk_kept.parquet",
        assignments=f"{DATA}/mturk_assignments.parquet",
        images=f"{DATA}/images.parquet",
    output:
        labels=f"{CROWD}/crowd_labels.parquet",
        accuracy=f"{CROWD}/crowd_label_accuracy.csv",
    log:
        f"{LOGS}/crowd/labels.log",
    threads: 1
    resources:
        mem_mb=1000,
    script:
        script_path("crowd_labels.py")


rule crowd_analysis:
    input:
        images=f"{DATA}/images.parquet",
        annotations=crowd_annotation_inputs,
        targets=f"{CROWD}/targets.parquet",
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
    script:
        script_path("crowd_disagreement.py")


ALL_TARGETS += [
    f"{CROWD}/targets.parquet",
    f"{CROWD}/mturk_funnel.csv",
    f"{CROWD}/crowd_labels.parquet",
    f"{ANALYSIS}/label_correlation.csv",
    f"{ANALYSIS}/disagreement_auc.csv",
]

if config["crowd"].get("truth", {}).get("workers"):

    # The truth file is written by the synthetic generator, which declares only a marker as its
    # output; the decisions depend on the ingest, which depends on that marker, so the file is
    # in place when this rule runs (the script says so clearly if it is not).
    rule crowd_spammer_detection:
        input:
            decisions=f"{CROWD}/mturk_decisions.parquet",
        params:
            workers=config["crowd"]["truth"]["workers"],
        output:
            detection=f"{CROWD}/spammer_detection.csv",
        log:
            f"{LOGS}/crowd/spammer_detection.log",
        threads: 1
        script:
            script_path("crowd_spammers.py")

    ALL_TARGETS += [f"{CROWD}/spammer_detection.csv"]

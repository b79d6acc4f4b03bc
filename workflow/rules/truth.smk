# The truth checks: what the workflow recovered against what the synthetic default drew
# (resources/synthetic/<run_name>/synthetic/truth/), only where that truth exists (synthetic.enabled). Each table of
# results/truth/ compares one stage with the truth; summary.csv judges them against the floors in
# crowdskin.truth.FLOORS. A value below its floor is reported (summary and report page) and never
# stops the run. Logic: src/crowdskin/truth.py; all three are local rules: they tabulate small tables.

if TRUTH_CHECKS:

    localrules:
        truth_data,
        truth_auc,
        truth_spread_heads,
        truth_summary,

    # Everything before training, so `snakemake results/truth/automated.csv` needs no training job.
    rule truth_data:
        input:
            truth_images=rules.synthesize.output.truth_images,
            truth_workers=rules.synthesize.output.truth_workers,
            automated=rules.automated_collect.output.wide,
            annotations=f"{DATA}/annotations.parquet",
            automated_annotations=rules.automated_collect.output.long,
            targets=rules.crowd_targets.output.targets,
            decisions=rules.crowd_mturk_filter.output.decisions,
            kept=rules.crowd_mturk_filter.output.kept,
            assignments=f"{DATA}/mturk_assignments.parquet",
            worker_reliability=rules.crowd_labels.output.workers,
        output:
            automated=truth_table("automated"),
            annotations=truth_table("annotations"),
            consensus=truth_table("consensus"),
            ambiguity=truth_table("ambiguity"),
            mturk_funnel=truth_table("mturk_funnel"),
            dawid_skene=truth_table("dawid_skene"),
            dawid_skene_workers=f"{TRUTH}/dawid_skene_workers.csv",
        log:
            f"{LOGS}/truth/data.log",
        script:
            script_path("truth_checks.py")

    rule truth_auc:
        input:
            auc_summary=rules.scores.output.auc_summary,
        output:
            auc=truth_table("auc"),
        log:
            f"{LOGS}/truth/auc.log",
        script:
            script_path("truth_checks.py")

    # The disagreement models' spread heads against the drawn ambiguity (empty without such a model).
    rule truth_spread_heads:
        input:
            truth_images=rules.synthesize.output.truth_images,
            predictions=SPREAD_HEAD_FILES,
        output:
            spread_heads=truth_table("spread_heads"),
        log:
            f"{LOGS}/truth/spread_heads.log",
        params:
            index=SPREAD_HEAD_INDEX,
        script:
            script_path("truth_checks.py")

    if TRUTH_EXPLAIN_TABLES:

        # Where the models look: the baseline's relevance in the lesion; with the shortcut trap,
        # its AUC on trap images and its relevance on the marker against the marker-free reference.
        rule truth_explain:
            input:
                **(
                    {
                        "shortcut": rules.explain_scores.output.shortcut,
                        "lesions": [
                            f"{EXPLAIN}/{model}/{backbone}/relevance.parquet"
                            for model in ("baseline", CLEAN_REFERENCE_MODEL)
                            for backbone in TRAIN_BACKBONES
                        ],
                    }
                    if SHORTCUT
                    else {}
                ),
                relevance=rules.explain_scores.output.summary,
            output:
                **{name: truth_table(name) for name in TRUTH_EXPLAIN_TABLES},
            log:
                f"{LOGS}/truth/explain.log",
            params:
                reference=CLEAN_REFERENCE_MODEL,
            script:
                script_path("truth_checks.py")

        ALL_TARGETS += [*rules.truth_explain.output]

    rule truth_summary:
        input:
            **{name: truth_table(name) for name in TRUTH_TABLES},
        output:
            summary=f"{TRUTH}/summary.csv",
        log:
            f"{LOGS}/truth/summary.log",
        script:
            script_path("truth_checks.py")

    ALL_TARGETS += [
        *rules.truth_data.output,
        *rules.truth_auc.output,
        *rules.truth_spread_heads.output,
        *rules.truth_summary.output,
    ]


if TRUTH_CHECKS and TRAIN_ANNOTATED:

    # The models that learn each annotator against the simulated workers and students.
    rule truth_annotators:
        input:
            learned=ANNOTATOR_FILES,
            votes=rules.crowd_votes.output.votes,
            annotations=f"{DATA}/annotations.parquet",
            truth_images=rules.synthesize.output.truth_images,
            truth_workers=rules.synthesize.output.truth_workers,
            truth_students=rules.synthesize.output.truth_students,
        output:
            annotators=truth_table("annotators"),
            workers=f"{TRUTH}/annotator_workers.csv",
        log:
            f"{LOGS}/truth/annotators.log",
        params:
            index=ANNOTATOR_INDEX,
        script:
            script_path("truth_checks.py")

    ALL_TARGETS += [*rules.truth_annotators.output]

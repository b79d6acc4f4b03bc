# The report stage: every table a reader should see and every figure under its caption, rendered
# to HTML pages for Snakemake's report (`snakemake --report results/<run_name>/report.html`, which
# `make run` ends with), and the landing page that workflow/report/workflow.rst includes.


localrules:
    report_tables,
    report_figures,


rule report_tables:
    input:
        unpack(report_table_inputs),
    output:
        # the truth checks' page, where they run (the synthetic default)
        **REPORT_TRUTH_PAGE,
        # where the models look, where the explanation stage runs
        **REPORT_EXPLAIN_PAGE,
        # what the networks learned of each annotator, where the grid learns them
        **REPORT_ANNOTATORS_PAGE,
        # the landing page (workflow/report/workflow.rst includes it) and the first category
        summary=report_page("summary", "summary", "The answer first"),
        data=report_page("data", "data", "Rows read, kept and quarantined"),
        automated=report_page("automated", "annotations", "Automated ABC scores"),
        crowd=report_page("crowd", "crowd", "Crowd layer tables"),
        training=report_page("training", "training", "Test AUC per job; annotation heads"),
        auc_table=report_page("auc_table", "models", "AUC table (Table 5)"),
        comparisons=report_page("comparisons", "models", "Comparisons"),
        auc_folds=report_page("auc_folds", "models", "AUC per fold (table)"),
        config=report_page("config", "config", "Configuration"),
    log:
        f"{LOGS}/report_tables.log",
    params:
        config=REPORT_CONFIG,
        backbones=SCORED_BACKBONES,
        roles=REPORT_ROLES,
    script:
        script_path("report_tables.py")


ALL_TARGETS += [*rules.report_tables.output]


# One job for every figure's page: each is a second of embedding, less than a job's start-up.
rule report_figures:
    input:
        figures=[figure for figure, _, _, _ in REPORT_FIGURES.values()],
        captions=[
            workflow_file(f"report/{caption}.rst") for _, _, _, caption in REPORT_FIGURES.values()
        ],
    output:
        [
            report(
                f"{REPORT}/figures/{name}.html",
                category=CATEGORIES[category],
                labels={"result": label},
            )
            for name, (_, category, label, _) in REPORT_FIGURES.items()
        ],
    log:
        f"{LOGS}/report_figures.log",
    params:
        titles=[label for _, _, label, _ in REPORT_FIGURES.values()],
        values=REPORT_CAPTION_VALUES,
    script:
        script_path("report_figures.py")


ALL_TARGETS += [*rules.report_figures.output]

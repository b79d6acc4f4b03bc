# The report stage: every table a reader should see, rendered to HTML for Snakemake's report
# (`snakemake --report results/<run_name>/report.html`, which `make run` ends with). The figures are
# `report()` outputs of their own stages.


localrules:
    report_tables,
    report_figure,


rule report_tables:
    input:
        unpack(report_table_inputs),
    output:
        # the truth checks' page, where they run (the synthetic default)
        **REPORT_TRUTH_PAGE,
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


rule report_figure:
    input:
        figure=lambda wildcards: REPORT_FIGURES[wildcards.figure][0],
        caption=lambda wildcards: f"{workflow.basedir}/workflow/report/"
        f"{REPORT_FIGURES[wildcards.figure][3]}.rst",
    output:
        report(
            f"{REPORT}/figures/{{figure}}.html",
            category=report_figure_category,
            labels=report_figure_labels,
        ),
    log:
        f"{LOGS}/report_figure/{{figure}}.log",
    wildcard_constraints:
        figure=names_pattern(REPORT_FIGURES),
    params:
        title=lambda wildcards: REPORT_FIGURES[wildcards.figure][2],
        values=REPORT_CAPTION_VALUES,
    script:
        script_path("report_figure.py")


ALL_TARGETS += expand(rules.report_figure.output[0], figure=REPORT_FIGURES)

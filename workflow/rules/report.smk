# The report stage: every table a reader should see, rendered to HTML for Snakemake's report
# (`snakemake --report results/<run_name>/report.html`, which `make run` ends with). The figures are
# `report()` outputs of their own stages.


localrules:
    report_tables,


rule report_tables:
    input:
        unpack(report_table_inputs),
    output:
        # the truth checks' page, where they run (the synthetic default)
        **REPORT_TRUTH_PAGE,
        data=report_page("data", "Data and quarantine"),
        automated=report_page("automated", "Automated ABC"),
        crowd=report_page("crowd", "Crowd layer"),
        training=report_page("training", "Training"),
        auc_table=report_page("auc_table", "Ensembles and statistics"),
        comparisons=report_page("comparisons", "Ensembles and statistics"),
        auc_folds=report_page("auc_folds", "Ensembles and statistics"),
        config=report_page("config", "Configuration"),
    log:
        f"{LOGS}/report_tables.log",
    params:
        config=REPORT_CONFIG,
        backbones=SCORED_BACKBONES,
    script:
        script_path("report_tables.py")


ALL_TARGETS += [*rules.report_tables.output]

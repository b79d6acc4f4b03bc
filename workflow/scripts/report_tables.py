"""Snakemake adapter: the report's table pages (crowdskin.report; Table 5 via crowdskin.evaluate.scores)."""
from pathlib import Path

import pandas as pd

from crowdskin import report
from crowdskin.evaluate.scores import format_table
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
inp, out, params = snakemake.input, snakemake.output, snakemake.params
run = params.config["run_name"]
results = f"results/{run}"


def csv(name):
    return pd.read_csv(inp[name], keep_default_na=True)


def write(path, title, *sections):
    Path(path).write_text(report.page(f"{run}: {title}", *sections), encoding="utf-8")


write(out.data, "data",
      report.table_section(csv("ingest_counts"), "Rows read, kept and quarantined per file",
                           "rows in = rows kept + rows quarantined, per file and table"),
      report.table_section(report.quarantine_summary(pd.read_parquet(inp.quarantine)), "Quarantined rows by reason",
                           f"{results}/data/quarantine.parquet holds every row with its file, row, column and "
                           "raw value"),
      report.table_section(csv("download_report"), "Download report", "every file acquired, with its checksum"))

status, distribution = report.automated_summary(pd.read_parquet(inp.automated))
write(out.automated, "automated ABC",
      report.table_section(status, "Lesions per dataset and status"),
      report.table_section(distribution, "Automated scores"))

crowd_sections = [
    report.table_section(csv("funnel"), "MTurk filtering funnel",
                         "assignments, workers, HITs and accuracy left after each filter"),
    report.table_section(csv("label_accuracy"), "Crowd labels against the expert labels"),
]
if hasattr(inp, "spammer_detection"):
    crowd_sections.append(report.table_section(csv("spammer_detection"),
                                               "Spammer detection against the simulated truth"))
crowd_sections += [
    report.table_section(csv("annotation_counts"), "Annotations per source and feature"),
    report.table_section(csv("label_correlation"), "Correlation of the targets with the diagnosis"),
    report.table_section(csv("source_agreement"), "Agreement between sources"),
    report.table_section(csv("disagreement"), "Disagreement as a feature: AUC per experiment"),
]
write(out.crowd, "crowd layer", *crowd_sections)
if hasattr(out, "annotators"):
    learned = csv("annotators")
    annotator_sections = [
        report.table_section(report.annotators_view(learned, "confusion"), "MTurk workers: the crowd layer's confusion "
                             "matrices", "per model, backbone and worker, averaged over the folds that saw the "
                             "worker: reliability = the chance their vote is the true diagnosis under equal priors "
                             "(the diagonal of the learned confusion matrix), its sd over the folds, and the matrix's "
                             "off-diagonal (confusion_01: votes abnormal for a normal lesion; confusion_10: the "
                             "reverse); beside it Dawid-Skene's reliability on the same votes, fitted without the "
                             f"image. Every column: {results}/scores/annotators.csv"),
        report.table_section(report.annotators_view(learned, "affine"), "Students: each one's scale and bias",
                             "per model, backbone and annotator (year, group, column), averaged over the folds: "
                             "scale and bias of their scores on the shared score head (standardised scores); "
                             "bias_raw in the score's units; agreement = correlation with the other students' mean "
                             "score, the estimate made without the image"),
    ]
    if hasattr(inp, "annotator_workers"):
        annotator_sections.append(report.table_section(
            csv("annotator_workers"), "MTurk workers against the simulated truth",
            "per worker: spammer or not, votes, accuracy of their votes judged by the true diagnoses, the reliability "
            "the crowd layer learned and Dawid-Skene's"))
    write(out.annotators, "each annotator, learned by the network", *annotator_sections)

write(out.training, "training",
      report.table_section(csv("train_summary"), "Test AUC per task and backbone (folds)"),
      report.table_section(csv("head_metrics"), "Annotation heads: predicted against the annotation target",
                           "per model, backbone and head (a multi-task model's annotation target; a disagreement "
                           "model's `<feature>_std` head predicts the annotators' spread): mean absolute error and "
                           "Spearman correlation on the test lesions that have the target, the mean over folds and "
                           "pooled over the folds' test lesions"))

averaged = "all" in params.backbones
write(out.auc_table, "AUC table",
      report.table_section(format_table(csv("auc_table"), params.backbones), "AUC per model and backbone (Table 5)",
                           "each cell: mean ± sd of the test AUC over the folds · AUC of the pooled out-of-fold "
                           "predictions [95 % stratified bootstrap CI]"
                           + ("; 'all backbones' averages the backbones' predicted probabilities" if averaged
                              else "")))
comparisons = csv("comparisons")
verdicts = report.control_verdicts(comparisons, params.roles["controls"])
write(out.comparisons, "comparisons",
      report.text_section("Gains from the annotations", " ".join(verdicts)) if verdicts else "",
      report.table_section(report.comparisons_view(comparisons), "Comparisons",
                           "difference = AUC(model) − AUC(reference) on the same lesions; adjusted CI: "
                           "Bonferroni-adjusted DeLong interval over every row, consistent with Holm's p (an "
                           "interval that excludes 0 has Holm p < 0.05); bootstrap CI: the paired stratified "
                           f"bootstrap 95 % interval, unadjusted. Every column: {results}/scores/comparisons.csv"))
if hasattr(out, "explanations"):
    explanations = [
        report.table_section(report.relevance_view(csv("relevance")), "Relevance mass in the lesion",
                             "per model and backbone: the mean share of each Grad-CAM map's positive relevance that "
                             "lies inside the lesion mask, over the test lesions with a mask, pooled over the folds "
                             "[95 % bootstrap CI]; the folds' mean and sd; the lesions' mean area share: what a map "
                             "spread evenly over the image would score. Every column: "
                             f"{results}/scores/relevance.csv"),
        report.table_section(report.paired_comparisons_view(csv("relevance_comparisons")),
                             "Relevance mass against the baseline",
                             "difference = model − baseline of the same backbone, paired per lesion; bootstrap CI "
                             "unadjusted; adjusted CI: Bonferroni over every row (an interval clear of 0 has Holm p < "
                             "0.05)"),
    ]
    if hasattr(inp, "shortcut"):
        explanations += [
            report.table_section(report.shortcut_view(csv("shortcut")),
                                 "The shortcut trap: AUC on clean and trap images",
                                 "as tested: the test images as generated (the marker agreeing with the diagnosis "
                                 "as in training); clean: the same lesions without the marker; trap: the marker's "
                                 "presence reversed; the drop clean − trap with its paired DeLong CI; the share of "
                                 "relevance on the marker (trap images that show it) and, on the clean images, on its "
                                 "region and in the lesion; clean-reference: the baseline trained without the marker. "
                                 f"Every column: {results}/scores/shortcut.csv"),
            report.table_section(report.paired_comparisons_view(csv("shortcut_comparisons")),
                                 "Falling for the marker, against the baseline",
                                 "difference = the model's AUC drop − the baseline's on the same lesions (negative: "
                                 "fooled less), DeLong intervals; adjusted CI: Bonferroni over every row"),
        ]
    write(out.explanations, "where the models look", *explanations)
write(out.auc_folds, "AUC per fold", report.table_section(csv("auc_folds"), "AUC per model, backbone and fold"))
if hasattr(out, "truth"):
    summary = csv("truth_summary")
    # The verdict beside the check's name, where a reader looks first.
    first = [c for c in ("check", "status", "value", "floor") if c in summary.columns]
    write(out.truth, "truth checks",
          report.table_section(summary[first + [c for c in summary.columns if c not in first]],
                               "Checks against the synthetic truth",
                               f"{report.status_counts(summary)}. A check passes when its value reaches its floor "
                               "(kind floor: set a margin below what the default data give; kind target: what the "
                               "training aims for). A fail is reported and never stops the run; 'no value' means "
                               "the row or the statistic is missing; 'no floor' values are reported unjudged."),
          report.table_section(csv("truth_automated"), "Automated ABC against the drawn lesions",
                               "per feature: lesions of the truth (n_truth), scored (n), share equal to the truth, "
                               "Spearman with the truth; the border score counts abrupt segments, not lobes, so only "
                               "its Spearman is meaningful"),
          report.table_section(csv("truth_annotations"), "Raw scores against the truth",
                               "every single score of each source and feature: exact agreement, mean absolute error "
                               "and Spearman with the true value"),
          report.table_section(csv("truth_consensus"), "Consensus targets against the truth",
                               "the training targets are means of z-scores: only their order (Spearman) compares"),
          report.table_section(csv("truth_ambiguity"), "Annotators' spread against the true ambiguity",
                               "per source with several annotators: each lesion's spread (std of the annotators' "
                               "z-scores, lesions scored at least twice) averaged over its features (feature mean), "
                               "then per feature: mean spread of clear and ambiguous lesions, Spearman with the "
                               "drawn ambiguity"),
          report.table_section(csv("truth_spread_heads"), "Disagreement heads against the true ambiguity",
                               "each disagreement model's spread heads (<feature>_std) on its test lesions, pooled "
                               "over the folds: the heads' mean (head mean), then each head: mean prediction on "
                               "clear and ambiguous lesions, Spearman with the drawn ambiguity"),
          report.table_section(csv("truth_mturk_funnel"), "MTurk filters against the simulated spammers",
                               "assignment level: positive = answer by a spammer, predicted = rejected; each rule "
                               "alone, then the whole funnel"),
          report.table_section(csv("truth_dawid_skene"), "Dawid–Skene worker reliability against the simulated workers",
                               "answers: kept = the model fitted on the funnel's kept answers, as the crowd labels "
                               "are; all = on every answer, spammers' included. n_truth: simulated workers; n: those "
                               "with an estimate (a worker whose answers were all filtered out has none)"),
          report.table_section(csv("truth_workers"), "Worker reliability per simulated worker",
                               "estimated_reliability: the fitted model's probability that the worker's vote is "
                               "right; empirical_accuracy: the share of their votes (kept or all, by the answers "
                               "column) that the true diagnoses confirm"),
          report.table_section(csv("truth_auc"), "Test AUC of the baseline and the multi-task models",
                               "fold mean ± sd and pooled out-of-fold AUC per backbone (all: averaged over the "
                               f"backbones), from {results}/scores/auc_summary.csv"))
truth = csv("truth_summary") if hasattr(inp, "truth_summary") else None
Path(out.summary).write_text(report.summary_page(run, csv("auc_summary"), comparisons, truth=truth, **params.roles),
                             encoding="utf-8")
Path(out.config).write_text(report.config_page(params.config, run), encoding="utf-8")
log.info("wrote %d report pages", len(out))

"""Tables for the Snakemake report (results/<run_name>/report.html), rendered as small standalone HTML pages.

Snakemake's report displays images, HTML and PDF in the page and gives any other file only a
download button, so every table a reader should see is rendered here; the summaries of the large
tables (quarantine, automated scores) are computed here too.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import yaml

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px; margin: 1em; color: #222; }
h1 { font-size: 1.2em; margin: 0 0 .4em 0; }
p.note { color: #555; max-width: 60em; }
table { border-collapse: collapse; margin: .5em 0 1.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; max-width: 26em; }
td { overflow-wrap: break-word; }
td.status-pass { background: #e3f4e8 !important; color: #006b3c; font-weight: 600; }
td.status-fail { background: #fde7ea !important; color: #b00020; font-weight: 600; }
td.status-other { background: #f3f3f3 !important; color: #555; }
p.none { color: #555; font-style: italic; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f6f6; padding: .8em; border: 1px solid #ddd; }
div.caption { color: #444; max-width: 62em; margin-bottom: .8em; }
div.caption p { margin: .3em 0; }
img { display: block; }
"""


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


_STATUS_CLASSES = {"pass": "status-pass", "fail": "status-fail"}


def table_section(frame: pd.DataFrame, title: str, note: str = "", *, max_rows: int = 500) -> str:
    """One titled table as an HTML fragment; an empty table says "none", more than `max_rows` rows
    are cut with a note saying so, and a `status` column is coloured (pass green, fail red)."""
    note_html = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    if frame.empty:
        return f"<h1>{html.escape(title)}</h1>{note_html}<p class='none'>None.</p>"
    shown = frame.head(max_rows)
    cut = f"<p class='note'>First {max_rows} of {len(frame)} rows; the CSV holds all.</p>" if len(frame) > max_rows \
        else ""
    # A long column name breaks after its underscores rather than widening the table past the window.
    columns = [html.escape(str(c)).replace("_", "_<wbr>") for c in shown.columns]
    rows = []
    for values in shown.itertuples(index=False):
        cells = []
        for column, value in zip(shown.columns, values, strict=True):
            text = html.escape(_format(value))
            css = ""
            if column == "status":
                css = f" class='{_STATUS_CLASSES.get(str(value), 'status-other')}'"
            cells.append(f"<td{css}>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f"<h1>{html.escape(title)}</h1>{note_html}{body}{cut}"


def comparisons_view(comparisons: pd.DataFrame) -> pd.DataFrame:
    """comparisons.csv as a reader needs it: who against whom, the difference, the adjusted interval
    beside Holm's p, then the unadjusted bootstrap interval and the lesions."""
    def interval(low: Any, high: Any) -> str:
        return "" if _missing(low) or _missing(high) else f"{low:+.3f} to {high:+.3f}"

    def number(value: Any, digits: int = 3) -> str:
        return "" if _missing(value) else f"{value:+.{digits}f}"

    def p_value(value: Any) -> str:
        return "" if _missing(value) else "< 0.001" if value < 0.001 else f"{value:.3f}"

    view = pd.DataFrame({
        "model": comparisons["model"], "reference": comparisons["reference"], "backbone": comparisons["backbone"],
        "AUC model": [f"{v:.3f}" if not _missing(v) else "" for v in comparisons["auc_model"]],
        "AUC reference": [f"{v:.3f}" if not _missing(v) else "" for v in comparisons["auc_reference"]],
        "difference": [number(v) for v in comparisons["difference"]],
        "adjusted 95 % CI": [interval(lo, hi) for lo, hi in zip(comparisons["adjusted_ci_low"],
                                                              comparisons["adjusted_ci_high"], strict=True)],
        "Holm p": [p_value(v) for v in comparisons["holm_p"]],
        "bootstrap 95 % CI (unadjusted)": [interval(lo, hi) for lo, hi in zip(comparisons["ci_low"],
                                                                            comparisons["ci_high"], strict=True)],
        "lesions": comparisons["n_test"],
    })
    if "scope" in comparisons and (comparisons["scope"] != "pooled").any():
        view.insert(3, "scope", comparisons["scope"])
    if comparisons["note"].fillna("").astype(bool).any():
        view["note"] = comparisons["note"].fillna("")
    return view


def _interval(low: Any, high: Any, signed: bool = True) -> str:
    if _missing(low) or _missing(high):
        return ""
    return f"{low:+.3f} to {high:+.3f}" if signed else f"{low:.3f} to {high:.3f}"


def _number(value: Any, signed: bool = False) -> str:
    return "" if _missing(value) else f"{value:+.3f}" if signed else f"{value:.3f}"


def _p_value(value: Any) -> str:
    return "" if _missing(value) else "< 0.001" if value < 0.001 else f"{value:.3f}"


_ANNOTATOR_VIEW_COLUMNS = {
    "confusion": ["model", "backbone", "annotator", "n_folds", "n_answers", "weight", "reliability", "reliability_sd",
                  "dawid_skene_reliability", "confusion_01", "confusion_10"],
    "affine": ["model", "backbone", "annotator", "n_folds", "n_answers", "weight", "scale", "bias", "bias_raw",
               "bias_raw_sd", "agreement"],
}


def annotators_view(summary: pd.DataFrame, annotator_model: str) -> pd.DataFrame:
    """The rows of results/scores/annotators.csv of one kind of annotator head, with its columns:
    `confusion` (crowd layers: reliabilities beside Dawid-Skene's, least reliable first) or `affine`
    (annotator heads: scales and biases beside agreement)."""
    rows = summary[summary["annotator_model"] == annotator_model]
    if annotator_model == "confusion":
        rows = rows.sort_values(["model", "backbone", "reliability"], kind="stable")
    return rows[_ANNOTATOR_VIEW_COLUMNS[annotator_model]].reset_index(drop=True)


def relevance_view(summary: pd.DataFrame) -> pd.DataFrame:
    """relevance.csv as a reader needs it: the pooled share in the lesion with its interval, the
    folds' spread, and what a map spread evenly would score."""
    return pd.DataFrame({
        "model": summary["model"], "backbone": summary["backbone"],
        "in the lesion": [_number(v) for v in summary["relevance_lesion"]],
        "95 % bootstrap CI": [_interval(lo, hi, False) for lo, hi in zip(summary["ci_low"], summary["ci_high"],
                                                                         strict=True)],
        "fold mean ± sd": ["" if _missing(m) else f"{m:.3f} ± {sd:.3f}" if not _missing(sd) else f"{m:.3f}"
                           for m, sd in zip(summary["fold_mean"], summary["fold_sd"], strict=True)],
        "lesions' area": [_number(v) for v in summary["lesion_area"]],
        "lesions": summary["lesions"],
    })


def paired_comparisons_view(comparisons: pd.DataFrame) -> pd.DataFrame:
    """An explanation comparison table (relevance_comparisons.csv, shortcut_comparisons.csv) in the
    AUC comparisons' shape: the difference, the adjusted interval beside Holm's p, the unadjusted one."""
    return pd.DataFrame({
        "model": comparisons["model"], "reference": comparisons["reference"], "backbone": comparisons["backbone"],
        "measure": comparisons["measure"],
        "model's": [_number(v) for v in comparisons["model_value"]],
        "reference's": [_number(v) for v in comparisons["reference_value"]],
        "difference": [_number(v, True) for v in comparisons["difference"]],
        "adjusted 95 % CI": [_interval(lo, hi) for lo, hi in zip(comparisons["adjusted_ci_low"],
                                                                comparisons["adjusted_ci_high"], strict=True)],
        "Holm p": [_p_value(v) for v in comparisons["holm_p"]],
        "95 % CI (unadjusted)": [_interval(lo, hi) for lo, hi in zip(comparisons["ci_low"], comparisons["ci_high"],
                                                                     strict=True)],
        "lesions": comparisons["pairs"],
    })


def shortcut_view(scores: pd.DataFrame) -> pd.DataFrame:
    """shortcut.csv as a reader needs it: AUC as tested, on clean and on trap images, the drop with
    its interval, and the shares of relevance on the marker and in the lesion."""
    return pd.DataFrame({
        "model": scores["model"], "backbone": scores["backbone"],
        "AUC as tested": [_number(v) for v in scores["auc_tested"]],
        "AUC clean": [_number(v) for v in scores["auc_clean"]],
        "AUC trap": [_number(v) for v in scores["auc_trap"]],
        "drop (clean − trap)": [_number(v, True) for v in scores["auc_drop"]],
        "drop 95 % CI": [_interval(lo, hi) for lo, hi in zip(scores["auc_drop_ci_low"], scores["auc_drop_ci_high"],
                                                            strict=True)],
        "on the marker (trap)": [_number(v) for v in scores["relevance_marker_trap"]],
        "its region (clean)": [_number(v) for v in scores["relevance_marker_clean"]],
        "in the lesion (clean)": [_number(v) for v in scores["relevance_lesion_clean"]],
        "lesions": scores["lesions"],
    })


def page(title: str, *sections: str) -> str:
    """A standalone HTML page of sections (each from `table_section` or `text_section`)."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>\n")


def text_section(title: str, text: str) -> str:
    return f"<h1>{html.escape(title)}</h1><p class='note'>{html.escape(text)}</p>"


def config_page(config: Mapping[str, Any], run_name: str) -> str:
    """The run's configuration (defaults filled in) as YAML."""
    text = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)
    return page(f"{run_name}: configuration",
                f"<h1>Configuration of run {html.escape(run_name)}</h1>"
                "<p class='note'>The validated configuration with every default filled in "
                "(workflow/schemas/); the execution section is left out: it never changes a result.</p>"
                f"<pre>{html.escape(text)}</pre>")


def quarantine_summary(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows counted per file, column and reason."""
    columns = [c for c in ("stage", "table", "origin_file", "column", "reason") if c in quarantine.columns]
    if quarantine.empty or not columns:
        return pd.DataFrame(columns=[*columns, "rows"])
    counts = quarantine.groupby(columns, dropna=False).size().rename("rows").reset_index()
    return counts.sort_values("rows", ascending=False, kind="stable").reset_index(drop=True)


def status_counts(summary: pd.DataFrame, column: str = "status") -> str:
    """"22 checks: 17 pass, 1 fail, ..." for a table with one status per row (the truth summary)."""
    if column not in summary.columns:
        raise ValueError(f"summary: missing column {column!r} (has {list(summary.columns)})")
    counts = summary[column].fillna("missing").value_counts(sort=False)
    return f"{len(summary)} checks: " + ", ".join(f"{n} {status}" for status, n in counts.items())


def automated_summary(automated: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(lesions per dataset and status, the distribution of each automated score)."""
    status = (automated.groupby(["dataset", "status"], dropna=False).size().rename("lesions").reset_index()
              if {"dataset", "status"} <= set(automated.columns) else pd.DataFrame())
    scores = [c for c in ("asymmetry_raw", "asymmetry_class", "border_score", "color_score") if c in automated.columns]
    if not scores:
        return status, pd.DataFrame()
    described = automated[scores].astype("float64").describe().T.reset_index().rename(columns={"index": "score"})
    return status, described


# ----------------------------------------------------------------------------------------------------
# The landing page

# Where the landing page stands among Snakemake's categories (sorted by name, hence the numbers), in
# the workflow's order; common.smk gives every report item one of these.
CATEGORIES = {
    "summary": "1. Summary",
    "data": "2. Data",
    "annotations": "3. Annotations",
    "crowd": "4. Crowd",
    "training": "5. Training",
    "models": "6. Models and ensembles",
    "operating": "7. Operating points, lesions, explanations",
    "checks": "8. Truth checks",
    "config": "9. Configuration",
}
CATEGORY_CONTENTS = {
    "data": "what was read, kept and quarantined, with the reason for every row set aside",
    "annotations": "the image-processing ABC scores and how the sources agree",
    "crowd": "the MTurk filtering funnel, crowd labels against the experts, disagreement, what the networks "
             "learned of each annotator",
    "training": "training curves per task family, and what each annotation head learned",
    "models": "the AUC table, every comparison with its adjusted interval, ROC curves, AUC per fold",
    "operating": "calibration, sensitivity and specificity at a validation-chosen threshold, lesions, and where "
                 "each model looks (Grad-CAM, relevance mass in the lesion, the shortcut trap)",
    "checks": "every result of the synthetic data against the truth it was drawn from",
    "config": "the run's settings, every default filled in",
}

_SUMMARY_STYLE = """
.crowdskin-summary { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px;
  color: #222; max-width: 62em; line-height: 1.45; }
.crowdskin-summary h2 { font-size: 1.15em; margin: .2em 0 .4em 0; }
.crowdskin-summary h3 { font-size: 1em; margin: 1em 0 .3em 0; }
.crowdskin-summary ul { margin: .2em 0 .6em 1.2em; padding: 0; list-style: disc; }
.crowdskin-summary li { margin: .15em 0; }
.crowdskin-summary .gain { color: #006b3c; font-weight: 600; }
.crowdskin-summary .none { color: #555; }
.crowdskin-summary .fail { color: #b00020; font-weight: 600; }
.crowdskin-summary .pass { color: #006b3c; font-weight: 600; }
.crowdskin-summary ol { margin: .2em 0 .6em 1.4em; padding: 0; list-style: decimal; }
/* Snakemake's landing view puts this description in a narrow column beside a tall rule graph:
   the summary takes the width, the rule graph follows below it. */
.prose.max-w-lg { max-width: 64em !important; }
div.grow.flex.gap-3.p-3.items-start { flex-direction: column; }
div.grow.flex.items-center.justify-center.h-screen.overflow-auto { align-items: flex-start; }
.crowdskin-summary code::before, .crowdskin-summary code::after { content: none; }
"""

ALPHA = 0.05


def _auc_text(row: Mapping[str, Any]) -> str:
    text = f"{row['pooled_auc']:.3f}"
    if not (_missing(row.get("pooled_ci_low")) or _missing(row.get("pooled_ci_high"))):
        text += f" (95 % CI {row['pooled_ci_low']:.3f}–{row['pooled_ci_high']:.3f})"
    return text


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def comparison_text(row: Mapping[str, Any]) -> str:
    """"+0.018 (adjusted 95 % CI 0.002 to 0.034, Holm p 0.04)" for one row of comparisons.csv."""
    if _missing(row.get("difference")):
        return "no difference (one class only)"
    text = f"{row['difference']:+.3f}"
    details = []
    if not (_missing(row.get("adjusted_ci_low")) or _missing(row.get("adjusted_ci_high"))):
        details.append(f"adjusted 95 % CI {row['adjusted_ci_low']:+.3f} to {row['adjusted_ci_high']:+.3f}")
    if not _missing(row.get("holm_p")):
        p = float(row["holm_p"])
        details.append("Holm p < 0.001" if p < 0.001 else f"Holm p {p:.3f}" if p < 0.01 else f"Holm p {p:.2f}")
    return text + (f" ({', '.join(details)})" if details else "")


def significant_gain(row: Mapping[str, Any], alpha: float = ALPHA) -> bool:
    """A positive difference with Holm p below alpha (its adjusted interval then clears 0 or nearly)."""
    return (not _missing(row.get("holm_p")) and float(row["holm_p"]) < alpha
            and not _missing(row.get("difference")) and float(row["difference"]) > 0)


def control_verdicts(comparisons: pd.DataFrame, controls: Sequence[str], reference: str = "baseline",
                     alpha: float = ALPHA) -> list[str]:
    """Plain sentences, per backbone, on which models' gains over the baseline also exceed the
    randomized control: a gain over the baseline that the control matches is no annotation gain."""
    pooled = comparisons[comparisons["scope"] == "pooled"] if "scope" in comparisons else comparisons
    sentences = []
    for backbone, part in pooled.groupby("backbone", sort=False):
        against_control = part[part["reference"].isin(controls)]
        if against_control.empty:
            continue
        vs_base = part[part["reference"] == reference].set_index("model")
        beats_control = [r for _, r in against_control.iterrows() if significant_gain(r, alpha)]
        beats_base = [m for m in against_control["model"] if m in vs_base.index and significant_gain(vs_base.loc[m],
                                                                                                   alpha)]
        control = against_control["reference"].iloc[0]
        where = f"On {backbone}" if backbone != "all" else "Averaged over the backbones"
        if beats_control:
            names = ", ".join(f"{r['model']} ({comparison_text(r)})" for r in beats_control)
            sentences.append(f"{where}, gains that exceed the randomized control ({control}): {names}.")
        else:
            sentences.append(f"{where}, no model with annotation heads and no ensemble beats the randomized "
                             f"control ({control}) after Holm's adjustment"
                             + (f"; {', '.join(beats_base)} beat{'s' if len(beats_base) == 1 else ''} the "
                                f"baseline, so that gain cannot be told apart from a second head's"
                                if beats_base else "") + ".")
    return sentences


def _best(summary: pd.DataFrame, models: Sequence[str]) -> Mapping[str, Any] | None:
    rows = summary[summary["model"].isin(models) & summary["pooled_auc"].notna()]
    if rows.empty:
        return None
    return rows.sort_values("pooled_auc", ascending=False, kind="stable").iloc[0].to_dict()


def _comparison(comparisons: pd.DataFrame, model: str, reference: str, backbone: str) -> Mapping[str, Any] | None:
    rows = comparisons[(comparisons["model"] == model) & (comparisons["reference"] == reference)
                       & (comparisons["backbone"] == backbone)]
    if "scope" in rows:
        rows = rows[rows["scope"] == "pooled"]
    return rows.iloc[0].to_dict() if len(rows) else None


def _versus(comparisons: pd.DataFrame, model: str, references: Sequence[str], backbone: str) -> str:
    parts = []
    for reference in references:
        row = _comparison(comparisons, model, reference, backbone)
        if row is not None:
            mark = "gain" if significant_gain(row) else "none"
            parts.append(f"<span class='{mark}'>vs {html.escape(reference)} {html.escape(comparison_text(row))}"
                         "</span>")
    return "; ".join(parts)


def summary_page(run_name: str, summary: pd.DataFrame, comparisons: pd.DataFrame, *, controls: Sequence[str],
                 ensembles: Sequence[str], crowdsim: Sequence[str], truth: pd.DataFrame | None = None,
                 reference: str = "baseline") -> str:
    """The report's landing page: per backbone the baseline's pooled AUC, the best model and ensemble
    against the baseline and the randomized control, CROWDSIM, the lesions tested and their class
    balance, the truth checks' verdict; then where to look next, in the workflow's order.

    `summary`: auc_summary.csv; `comparisons`: comparisons.csv; `controls`, `ensembles`, `crowdsim`:
    the model names of the randomized control(s), the ensembles of several tasks and CROWDSIM's
    models; `truth`: the truth checks' summary on the synthetic data (None elsewhere).
    """
    parts = [f"<h2>crowdskin run {html.escape(run_name)}: the answer first</h2>"]
    pooled = comparisons[comparisons["scope"] == "pooled"] if "scope" in comparisons else comparisons
    first = summary[summary["model"] == reference]
    if first.empty:
        parts.append("<p>No baseline was scored in this run, so there is no headline comparison.</p>")
    for row in first.itertuples(index=False):
        backbone = str(row.backbone)
        title = "averaged over the backbones" if backbone == "all" else backbone
        on = summary[summary["backbone"] == backbone]
        items = []
        if _missing(row.pooled_auc):
            items.append(f"Baseline: fold-mean AUC {row.mean_auc:.3f} "
                         f"(pooled AUC not defined: {html.escape(str(row.note))})")
        else:
            items.append(f"Baseline pooled out-of-fold AUC <b>{_auc_text(row._asdict())}</b>, "
                         f"fold mean {row.mean_auc:.3f}")
        # Every comparison with the baseline pairs the same lesions: any one of them counts them.
        against_baseline = pooled[(pooled["backbone"] == backbone) & (pooled["reference"] == reference)]
        tested = against_baseline.iloc[0].to_dict() if len(against_baseline) else None
        if tested is not None and not _missing(tested.get("n_test")):
            n, abnormal = int(tested["n_test"]), int(tested["n_abnormal"])
            items.append(f"{n} lesions tested, each once: {abnormal} abnormal ({abnormal / n:.0%}), "
                         f"{n - abnormal} normal")
        against = [reference, *[c for c in controls if c in set(on["model"])]]
        compared_with_control = set(pooled.loc[pooled["reference"].isin(controls) & (pooled["backbone"] == backbone),
                                               "model"])
        singles = [m for m in on["model"] if m in compared_with_control and m not in ensembles]
        for label, candidates in (("Best model with annotation heads", singles),
                                  ("Best ensemble", [m for m in on["model"] if m in ensembles])):
            best = _best(on, candidates)
            if best is not None:
                items.append(f"{label}: <b>{html.escape(best['model'])}</b> AUC {_auc_text(best)}; "
                             f"{_versus(pooled, best['model'], against, backbone)}")
        for model in [c for c in controls if c in set(on["model"])]:
            control = on[on["model"] == model].iloc[0].to_dict()
            items.append(f"Randomized control {html.escape(model)} (a second head on random targets): AUC "
                         f"{_auc_text(control)}; {_versus(pooled, model, [reference], backbone)}")
        for model in [m for m in crowdsim if m in set(on["model"])]:
            crowd_row = on[on["model"] == model].iloc[0].to_dict()
            others = [r for r in pooled.loc[(pooled["model"] == model) & (pooled["backbone"] == backbone),
                                            "reference"]]
            items.append(f"CROWDSIM {html.escape(model)}: AUC {_auc_text(crowd_row)}; "
                         f"{_versus(pooled, model, others, backbone)}")
        parts.append(f"<h3>{html.escape(title)}</h3><ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>")
    verdicts = control_verdicts(comparisons, controls, reference)
    if verdicts:
        parts.append("<h3>Gains from the annotations</h3><ul>"
                     + "".join(f"<li>{html.escape(v)}</li>" for v in verdicts) + "</ul>")
    parts.append("<p class='none'>Differences are AUC(model) − AUC(reference) on the pooled out-of-fold predictions; "
                 "intervals are Bonferroni-adjusted DeLong intervals over all comparisons of the run, so one "
                 "that excludes 0 always has Holm p &lt; 0.05. Green: a gain with Holm p &lt; 0.05.</p>")
    if truth is not None and "status" in truth.columns:
        failed = truth[truth["status"] == "fail"]
        verdict = ("<span class='pass'>all judged checks pass</span>" if failed.empty else
                   f"<span class='fail'>{len(failed)} fail: " + html.escape("; ".join(failed["check"].astype(str)))
                   + "</span>")
        parts.append(f"<h3>Truth checks (synthetic data)</h3><p>{html.escape(status_counts(truth))}: {verdict}.</p>")
    guide = "".join(f"<li><b>{html.escape(CATEGORIES[key])}</b>: {html.escape(text)}</li>"
                    for key, text in CATEGORY_CONTENTS.items() if key != "checks" or truth is not None)
    parts.append(f"<h3>Where to look next (Results, left)</h3><ol style='list-style:none;margin-left:0'>{guide}</ol>"
                 f"<p class='none'>Every table is also a CSV under <code>results/{html.escape(run_name)}/</code>; "
                 "every training job is an MLflow run (README: MLflow).</p>")
    return ("<!DOCTYPE html><meta charset='utf-8'>"
            f"<style>{_SUMMARY_STYLE}</style><div class='crowdskin-summary'>{''.join(parts)}</div>\n")


def render_caption(rst: str, values: Mapping[str, Any]) -> str:
    """A caption (reStructuredText; `{{ snakemake.config[...] }}` placeholders of Snakemake's report
    are not used here: `{{ name }}` takes `values[name]`) as an HTML fragment."""
    import jinja2
    from docutils.core import publish_parts

    text = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False).from_string(rst).render(**values)
    return publish_parts(text, writer="html", settings_overrides={"report_level": 4})["body"]


def figure_page(title: str, caption_rst: str, png: bytes, values: Mapping[str, Any]) -> str:
    """A report page of one figure: its title, its caption, then the PNG at its own size (embedded)."""
    import base64

    image = base64.b64encode(png).decode("ascii")
    return page(f"{values.get('run_name', '')}: {title}",
                f"<h1>{html.escape(title)}</h1><div class='note caption'>{render_caption(caption_rst, values)}</div>"
                f"<img alt='{html.escape(title)}' src='data:image/png;base64,{image}'>")

"""Tables for the Snakemake report (results/<run_name>/report.html), rendered as small standalone HTML pages.

Snakemake's report displays images, HTML and PDF in the page and gives any other file only a
download button, so every table a reader should see is rendered here; the summaries of the large
tables (quarantine, automated scores) are computed here too.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import yaml

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px; margin: 1em; color: #222; }
h1 { font-size: 1.2em; margin: 0 0 .4em 0; }
p.note { color: #555; max-width: 60em; }
table { border-collapse: collapse; margin: .5em 0 1.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f6f6; padding: .8em; border: 1px solid #ddd; }
"""


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


def table_section(frame: pd.DataFrame, title: str, note: str = "", *, max_rows: int = 500) -> str:
    """One titled table as an HTML fragment; more than `max_rows` rows are cut with a note saying so."""
    shown = frame.head(max_rows)
    cut = f"<p class='note'>First {max_rows} of {len(frame)} rows; the CSV holds all.</p>" if len(frame) > max_rows \
        else ""
    body = shown.to_html(index=False, na_rep="", formatters={c: _format for c in shown.columns}, escape=True,
                         border=0)
    note_html = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    return f"<h1>{html.escape(title)}</h1>{note_html}{body}{cut}"


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

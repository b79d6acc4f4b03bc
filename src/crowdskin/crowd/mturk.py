"""CROWDSIM quality rules for MTurk similarity answers, and the filtering funnel.

A worker sees an anchor lesion (diagnosis known) and two candidates, A and B, and picks the
candidate more similar to the anchor. An answer is *correct* when the chosen candidate has the
anchor's diagnosis; the accuracy of a set of answers is the share of correct ones.

Every rule is evaluated on every assignment independently (so the `flag_<rule>` columns show all
the rules an assignment breaks); the funnel then charges each rejected assignment to the *first*
rule, in a fixed order, that rejects it (`rejected_by`). The order is:

1. ``unparseable``: quarantined at ingest for an unreadable time, rate, label or a duplicate;
2. ``no_choice``: quarantined at ingest because no A/B choice was recorded
   (the whole export ``Batch_4607797``);
3. the configured rules, by default ``impossible_triplet``, ``confidence``, ``time_on_task``,
   ``approval_rate``.

The two ingest steps come first, although the issue lists "no choice" last, because the
quarantined rows carry none of the fields the other rules read, and accuracy is only defined for
answers with a choice. So every assignment in the exports is accounted for:
assignments before a step = assignments after it + assignments it removed.

Boundaries (all inclusive on the *kept* side, the study's "under"/"over"):

- time on task: a worker's first HIT (earliest ``accept_time`` among all their usable assignments;
  ties broken by ``submit_time`` then ``assignment_id``) is rejected when ``work_time_s < 60``;
  any later HIT when ``work_time_s < 10`` or ``work_time_s > 200``. Exactly 60 s, 10 s or 200 s
  is kept. The first HIT has no upper limit.
- approval rate: rejected when ``approval_rate < min_approval_rate`` (exactly the threshold is
  kept). A worker with no history (``0% (0/0)``, ``approval_total == 0``) is rejected only when
  ``reject_no_history`` is set, because 0/0 says nothing about quality.
- confidence: rejected when the stated confidence is in the excluded list; a missing confidence is
  not in any list and is kept.
- impossible triplet: both candidates carry the same diagnosis (labels equal and known).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

INGEST_STEPS = ("unparseable", "no_choice")


@dataclass(frozen=True)
class FilterSettings:
    """The CROWDSIM rules' parameters: the validated ``crowd.mturk`` section (defaults in
    crowd.schema.yaml; ``crowdskin.config.section("crowd")["mturk"]`` outside a workflow run)."""

    rules: tuple[str, ...]
    excluded_confidence: tuple[str, ...]
    first_hit_min_s: float
    later_hit_min_s: float
    later_hit_max_s: float
    min_approval_rate: float | None
    reject_no_history: bool

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> FilterSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"crowd.mturk: unknown setting(s) {sorted(unknown)}")
        missing = known - set(section)
        if missing:
            raise ValueError(f"crowd.mturk: missing setting(s) {sorted(missing)} (validate the config first)")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
        settings = cls(**values)
        bad = [r for r in settings.rules if r not in RULES]
        if bad:
            raise ValueError(f"crowd.mturk.rules: unknown rule(s) {bad}; known: {sorted(RULES)}")
        return settings


def chosen_label(assignments: pd.DataFrame) -> pd.Series:
    """The diagnosis (0/1, nullable) of the candidate the worker chose."""
    return assignments["candidate_a_label"].where(
        assignments["choice"] == "A", assignments["candidate_b_label"]
    ).astype("Int8")


def is_correct(assignments: pd.DataFrame) -> pd.Series:
    """True when the chosen candidate has the anchor's diagnosis; NA when a label is unknown."""
    chosen = chosen_label(assignments)
    return (chosen == assignments["anchor_label"].astype("Int8")).astype("boolean")


def accuracy(assignments: pd.DataFrame) -> float:
    """Share of correct answers among those with known labels; NaN for no such answer."""
    correct = is_correct(assignments).dropna()
    return float(correct.mean()) if len(correct) else float("nan")


# --- the rules: each returns a boolean Series, True = rejected -------------------------------

def rule_impossible_triplet(assignments: pd.DataFrame, settings: FilterSettings) -> pd.Series:
    a = assignments["candidate_a_label"].astype("Int8")
    b = assignments["candidate_b_label"].astype("Int8")
    return (a == b).fillna(False).astype(bool)


def rule_confidence(assignments: pd.DataFrame, settings: FilterSettings) -> pd.Series:
    excluded = {c.strip().lower() for c in settings.excluded_confidence}
    confidence = assignments["confidence"].astype("string").str.strip().str.lower()
    return confidence.isin(excluded).fillna(False).astype(bool)


def first_hit_of_worker(assignments: pd.DataFrame) -> pd.Series:
    """True for each worker's first HIT by accept time (ties: submit time, then assignment id)."""
    order = assignments.sort_values(["worker_id", "accept_time", "submit_time", "assignment_id"])
    first = ~order["worker_id"].duplicated(keep="first")
    return first.reindex(assignments.index)


def rule_time_on_task(assignments: pd.DataFrame, settings: FilterSettings) -> pd.Series:
    seconds = assignments["work_time_s"].astype(float)
    first = first_hit_of_worker(assignments)
    too_fast_first = first & (seconds < settings.first_hit_min_s)
    out_of_range_later = ~first & ((seconds < settings.later_hit_min_s) | (seconds > settings.later_hit_max_s))
    return (too_fast_first | out_of_range_later).astype(bool)


def rule_approval_rate(assignments: pd.DataFrame, settings: FilterSettings) -> pd.Series:
    total = assignments["approval_total"].astype("Int64")
    no_history = (total == 0).fillna(False).astype(bool)
    if settings.min_approval_rate is None:
        below = pd.Series(False, index=assignments.index)
    else:
        below = (assignments["approval_rate"].astype(float) < settings.min_approval_rate) & ~no_history
    return (below | (no_history & settings.reject_no_history)).astype(bool)


RULES: dict[str, Callable[[pd.DataFrame, FilterSettings], pd.Series]] = {
    "impossible_triplet": rule_impossible_triplet,
    "confidence": rule_confidence,
    "time_on_task": rule_time_on_task,
    "approval_rate": rule_approval_rate,
}

STEP_DESCRIPTIONS = {
    "exported": "all assignments in the MTurk exports",
    "unparseable": "quarantined at ingest: unreadable time, rate or label, conflicting answers, or a duplicate",
    "no_choice": "quarantined at ingest: no A/B choice recorded",
    "impossible_triplet": "both candidates carry the same diagnosis",
    "confidence": "stated confidence in the excluded list",
    "time_on_task": "first HIT < first_hit_min_s, or a later HIT < later_hit_min_s or > later_hit_max_s",
    "approval_rate": "lifetime approval rate below min_approval_rate (no history: see reject_no_history)",
}


def describe_steps(settings: FilterSettings) -> dict[str, str]:
    """STEP_DESCRIPTIONS with the run's thresholds in place of the setting names, for a reader of the
    funnel (the decisions keep STEP_DESCRIPTIONS' wording: a threshold is not part of a decision)."""
    rate = ("no approval-rate filter" if settings.min_approval_rate is None
            else f"lifetime approval rate below {settings.min_approval_rate:.0%}")
    history = "workers without a history rejected" if settings.reject_no_history else "workers without a history kept"
    excluded = ", ".join(settings.excluded_confidence) or "none"
    return STEP_DESCRIPTIONS | {
        "confidence": f"stated confidence excluded ({excluded})",
        "time_on_task": f"first HIT under {settings.first_hit_min_s:g} s, or a later HIT under "
                        f"{settings.later_hit_min_s:g} s or over {settings.later_hit_max_s:g} s",
        "approval_rate": f"{rate}; {history}",
    }


# --- ingest quarantine ---------------------------------------------------------------------

def quarantined_assignments(quarantine: pd.DataFrame, table: str = "mturk_assignments") -> pd.DataFrame:
    """One row per MTurk record the ingest quarantined, with the funnel step it counts under.

    A record can be quarantined for several fields (time and rate); it is one assignment, so
    rows are grouped by (origin_file, row). A missing choice wins over other reasons, as the
    export that lacks choices lacks them for every row regardless of its other fields.
    """
    columns = ["origin_file", "origin_row", "assignment_id", "step", "reason"]
    rows = quarantine[quarantine["table"] == table]
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    rows = rows.assign(
        # "conflicting choices" is a choice that cannot be read, not a missing one.
        _no_choice=rows["reason"].str.contains(r"\bno choice\b", case=False, regex=True, na=False),
        origin_row=rows["row"].astype("Int64"),
    )
    # File-level problems have no row; each such entry stands for itself.
    rows["_key"] = rows["origin_row"].astype("string").fillna(
        pd.Series("file:" + rows.index.astype(str), index=rows.index)
    )
    grouped = rows.groupby(["origin_file", "_key"], sort=True)
    out = grouped.agg(
        origin_row=("origin_row", "first"),
        assignment_id=("record_id", "first"),
        no_choice=("_no_choice", "any"),
        reason=("reason", lambda r: "; ".join(dict.fromkeys(r))),
    ).reset_index()
    out["step"] = np.where(out["no_choice"], "no_choice", "unparseable")
    return out[columns].reset_index(drop=True)


def export_ids(paths: Iterable[str | Path]) -> pd.DataFrame:
    """(origin_file, origin_row, worker_id, hit_id) of every record in the raw MTurk exports.

    Used only to count the workers and HITs of quarantined assignments at the funnel's first
    step; files that cannot be read are skipped (their workers then count as unknown).
    """
    frames = []
    for path in paths:
        try:
            raw = pd.read_csv(path, usecols=["WorkerId", "HITId"], dtype=str, keep_default_na=False)
        except (OSError, ValueError):
            continue
        frames.append(
            pd.DataFrame(
                {
                    "origin_file": str(path),
                    "origin_row": pd.array(np.arange(1, len(raw) + 1), dtype="Int64"),
                    "worker_id": raw["WorkerId"].to_numpy(),
                    "hit_id": raw["HITId"].to_numpy(),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["origin_file", "origin_row", "worker_id", "hit_id"])
    return pd.concat(frames, ignore_index=True)


# --- the funnel ------------------------------------------------------------------------------

@dataclass
class FunnelResult:
    decisions: pd.DataFrame  # every assignment, usable or quarantined, with rejected_by and flags
    funnel: pd.DataFrame  # one row per step
    kept: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        usable = self.decisions[self.decisions["rejected_by"].isna() & self.decisions["usable"]]
        self.kept = usable.drop(columns=["usable", "rejected_by", "rejection_reason"]).reset_index(drop=True)


def apply_filters(
    assignments: pd.DataFrame,
    quarantined: pd.DataFrame | None,
    settings: FilterSettings,
    exports: pd.DataFrame | None = None,
) -> FunnelResult:
    """Apply the rules in order; return every decision and the funnel table.

    `assignments`: the usable rows (results/data/mturk_assignments.parquet). `quarantined`: the
    output of `quarantined_assignments`. `exports`: optional ids from `export_ids`, to count the
    workers and HITs of quarantined rows.
    """
    usable = assignments.reset_index(drop=True).copy()
    usable["usable"] = True
    usable["correct"] = is_correct(usable)
    usable["rejected_by"] = pd.Series(pd.NA, index=usable.index, dtype="string")
    for name in settings.rules:
        flags = RULES[name](usable, settings)
        usable[f"flag_{name}"] = flags.to_numpy()
        newly = flags.to_numpy() & usable["rejected_by"].isna().to_numpy()
        usable.loc[newly, "rejected_by"] = name
    usable["rejection_reason"] = usable["rejected_by"].map(STEP_DESCRIPTIONS).astype("string")

    if quarantined is not None and len(quarantined):
        q = quarantined.copy()
        if exports is not None and len(exports):
            q = q.merge(exports, on=["origin_file", "origin_row"], how="left")
        q = q.rename(columns={"step": "rejected_by", "reason": "rejection_reason"})
        q["usable"] = False
        for name in settings.rules:
            q[f"flag_{name}"] = False
        decisions = pd.concat([q, usable], ignore_index=True)
    else:
        decisions = usable
    decisions["rejected_by"] = decisions["rejected_by"].astype("string")
    decisions["rejection_reason"] = decisions["rejection_reason"].astype("string")
    for column in ("worker_id", "hit_id", "assignment_id"):
        if column not in decisions:
            decisions[column] = pd.NA
    return FunnelResult(decisions=decisions, funnel=funnel_table(decisions, settings.rules, describe_steps(settings)))


def funnel_table(decisions: pd.DataFrame, rules: Sequence[str],
                 descriptions: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Assignments, workers, HITs and accuracy left after each step, and what each step removed;
    `descriptions` names the steps (STEP_DESCRIPTIONS by default)."""
    descriptions = STEP_DESCRIPTIONS if descriptions is None else descriptions
    steps = ["exported", *INGEST_STEPS, *rules]
    remaining = decisions
    rows = []
    for index, step in enumerate(steps):
        removed = 0
        if step != "exported":
            mask = remaining["rejected_by"] == step
            mask = mask.fillna(False).astype(bool)
            removed = int(mask.sum())
            remaining = remaining[~mask]
        answered = remaining[remaining["usable"].astype(bool)]
        correct = answered["correct"].dropna() if "correct" in answered else pd.Series(dtype=bool)
        possible = answered
        if "flag_impossible_triplet" in answered:
            possible = answered[~answered["flag_impossible_triplet"].astype(bool)]
        possible_correct = possible["correct"].dropna() if "correct" in possible else pd.Series(dtype=bool)
        rows.append(
            {
                "step": index,
                "rule": step,
                "description": descriptions.get(step, step),
                "removed": removed,
                "assignments": len(remaining),
                "workers": int(remaining["worker_id"].dropna().nunique()),
                "workers_unknown": int(remaining["worker_id"].isna().sum()),
                "hits": int(remaining["hit_id"].dropna().nunique()),
                "answered": len(answered),
                "accuracy": float(correct.mean()) if len(correct) else float("nan"),
                "accuracy_possible_triplets": float(possible_correct.mean()) if len(possible_correct) else float("nan"),
            }
        )
    return pd.DataFrame(rows)

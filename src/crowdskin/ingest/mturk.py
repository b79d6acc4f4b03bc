"""Raw Amazon MTurk batch exports of the CROWDSIM similarity task.

The exports drift in schema: which `Answer.*` columns carry the A/B choice and which the
confidence differs per file, and a value may sit in either of a split pair (`Answer.equal` /
`Answer.equal.label`). Columns are therefore recognised by their *values*, per file.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import pandas as pd

from crowdskin.ingest.common import Counts, MalformedFileError, Quarantine, read_records, require_columns
from crowdskin.tables import CONFIDENCE_LEVELS

CHOICES = ("A", "B")
REQUIRED = ["HITId", "AssignmentId", "WorkerId", "AcceptTime", "SubmitTime", "WorkTimeInSeconds",
            "LifetimeApprovalRate", "Input.image1_title", "Input.image1_label", "Input.image2_title",
            "Input.image2_label", "Input.image3_title", "Input.image3_label"]
# MTurk writes US time-zone abbreviations; an unknown one is quarantined rather than guessed.
TZ_OFFSETS = {"PST": -8, "PDT": -7, "MST": -7, "MDT": -6, "CST": -6, "CDT": -5, "EST": -5, "EDT": -4,
              "UTC": 0, "GMT": 0}
_APPROVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s*\((\d+)/(\d+)\)\s*$")
# MTurk worker ids are upper-case letters and digits (A1B2C3D4E5F6G7 in the real exports).
WORKER_ID = re.compile(r"[A-Z0-9]+")


def parse_mturk_time(raw: str) -> pd.Timestamp:
    """`Mon Nov 22 03:52:32 PST 2021` -> UTC timestamp. ValueError when unparseable."""
    parts = raw.split()
    if len(parts) != 6 or parts[4] not in TZ_OFFSETS:
        raise ValueError(f"unparseable MTurk time {raw!r}")
    local = datetime.strptime(" ".join(parts[:4] + parts[5:]), "%a %b %d %H:%M:%S %Y")
    aware = local.replace(tzinfo=timezone(timedelta(hours=TZ_OFFSETS[parts[4]])))
    return pd.Timestamp(aware).tz_convert("UTC")


def parse_approval_rate(raw: str) -> tuple[float, int, int]:
    """`100% (11/11)` -> (1.0, 11, 11); `0% (0/0)` -> (0.0, 0, 0): no history."""
    match = _APPROVAL.match(raw)
    if not match:
        raise ValueError(f"unparseable approval rate {raw!r}")
    percent, approved, total = float(match.group(1)), int(match.group(2)), int(match.group(3))
    if not 0 <= percent <= 100 or approved > total:
        raise ValueError(f"impossible approval rate {raw!r}")
    return percent / 100.0, approved, total


def _label(raw: str) -> int:
    value = float(raw)
    if value not in (0.0, 1.0):
        raise ValueError(raw)
    return int(value)


def classify_answer_columns(header: list[str], records: list[list[str]]) -> tuple[list[int], list[int]]:
    """Positions of the `Answer.*` columns that hold the choice (A/B) and those that hold a confidence."""
    choice, confidence = [], []
    for i, name in enumerate(header):
        if not name.startswith("Answer."):
            continue
        values = {r[i] for r in records if i < len(r) and r[i] != ""}
        if values and values <= set(CHOICES):
            choice.append(i)
        elif values and values <= set(CONFIDENCE_LEVELS):
            confidence.append(i)
    return choice, confidence


def _coalesce(record: list[str], positions: list[int]) -> list[str]:
    return sorted({record[i] for i in positions if i < len(record) and record[i] != ""})


def ingest_mturk(entries: list[dict], raw_root: Path, quarantine: Quarantine, counts: Counts) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    for entry in entries:
        folder = raw_root / entry["dir"]
        if not folder.is_dir():
            raise MalformedFileError(f"{folder}: MTurk export folder not found (ingest.mturk)")
        for path in sorted(folder.glob("*.csv")):
            header, records = read_records(path)
            require_columns(path, header, REQUIRED)
            at = {name: i for i, name in enumerate(header)}
            choice_cols, confidence_cols = classify_answer_columns(header, records)
            batch = re.sub(r"^Batch_(\w+?)_batch_results$", r"\1", path.stem)
            n_kept = 0
            for number, record in enumerate(records, start=1):
                record = record + [""] * (len(header) - len(record))
                fields = {name: record[i] for name, i in at.items()}
                assignment = fields["AssignmentId"]

                # reject(column, raw_value, reason), with this record's file, row and id bound now
                reject = partial(quarantine.add, "mturk_assignments", path, number, record_id=assignment)

                if not choice_cols:
                    reject("Answer.*", None, "no choice recorded: the export has no Answer column with A/B values")
                    continue
                choices = _coalesce(record, choice_cols)
                if not choices:
                    reject(",".join(header[i] for i in choice_cols), "", "no choice recorded")
                    continue
                if len(choices) > 1:
                    reject(",".join(header[i] for i in choice_cols), "/".join(choices), "conflicting choices")
                    continue
                confidences = _coalesce(record, confidence_cols)
                if len(confidences) > 1:
                    reject(",".join(header[i] for i in confidence_cols), "/".join(confidences),
                           "conflicting confidences")
                    continue
                if assignment in seen:
                    reject("AssignmentId", assignment, "duplicate assignment")
                    continue
                worker = fields["WorkerId"]
                if not worker:
                    # kept, every anonymous answer would pass the filters as one "worker"
                    reject("WorkerId", "", "blank WorkerId: the answer cannot be told from another worker's")
                    continue
                if not WORKER_ID.fullmatch(worker):
                    reject("WorkerId", worker, "malformed WorkerId: MTurk's are upper-case letters and digits")
                    continue
                try:
                    accept = parse_mturk_time(fields["AcceptTime"])
                except ValueError as error:
                    reject("AcceptTime", fields["AcceptTime"], str(error))
                    continue
                try:
                    submit = parse_mturk_time(fields["SubmitTime"])
                except ValueError as error:
                    reject("SubmitTime", fields["SubmitTime"], str(error))
                    continue
                try:
                    work_time = float(fields["WorkTimeInSeconds"])
                    if work_time < 0:
                        raise ValueError
                except ValueError:
                    reject("WorkTimeInSeconds", fields["WorkTimeInSeconds"], "work time is not a non-negative number")
                    continue
                try:
                    rate, approved, total = parse_approval_rate(fields["LifetimeApprovalRate"])
                except ValueError as error:
                    reject("LifetimeApprovalRate", fields["LifetimeApprovalRate"], str(error))
                    continue
                labels = {}
                for role, n in (("anchor", 1), ("candidate_a", 2), ("candidate_b", 3)):
                    column = f"Input.image{n}_label"
                    try:
                        labels[role] = _label(fields[column])
                    except ValueError:
                        reject(column, fields[column], "diagnosis label is not 0 or 1")
                        break
                if len(labels) < 3:
                    continue
                seen.add(assignment)
                rows.append({
                    "batch": batch, "hit_id": fields["HITId"], "assignment_id": assignment,
                    "worker_id": worker,
                    "anchor_id": fields["Input.image1_title"], "anchor_label": labels["anchor"],
                    "candidate_a_id": fields["Input.image2_title"], "candidate_a_label": labels["candidate_a"],
                    "candidate_b_id": fields["Input.image3_title"], "candidate_b_label": labels["candidate_b"],
                    "choice": choices[0], "confidence": confidences[0] if confidences else None,
                    "work_time_s": work_time, "accept_time": accept, "submit_time": submit,
                    "approval_rate": rate, "approval_approved": approved, "approval_total": total,
                    "origin_file": str(path), "origin_row": number,
                })
                n_kept += 1
            counts.add(path, "mturk_assignments", "records", len(records), n_kept, len(records) - n_kept)
    return pd.DataFrame(rows)

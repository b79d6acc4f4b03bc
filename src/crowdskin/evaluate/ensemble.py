"""Ensembles: which ones the config asks for, and the equal-weight average of their members.

An ensemble averages the predicted probabilities of its members on one fold's test lesions and is
scored like a model (ENHANCE averages the class outputs of its three multi-task models, studABC,
crowdABC and autoABC, and scores the average). Members are training tasks on one backbone, or on
every backbone for backbone `all`. Three families, all from the config alone (so the DAG exists
before any training):

- `ensemble-<source>`: the single-feature multi-task models of one annotation source
  (`multitask-<source>-*`: the kinds that say `in_source_ensemble`);
- per task, the task itself averaged over the backbones (named as the task, backbone `all`);
- `evaluate.ensembles`: the user's own, name -> member tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crowdskin.evaluate.coverage import check_test_predictions
from crowdskin.train.kinds import kind_of
from crowdskin.train.tasks import Task

ALL_BACKBONES = "all"  # the backbone name of an average over every backbone
PREDICTION_COLUMNS = ["image_id", "fold", "split", "score", "label", "label_source"]


class EnsembleError(ValueError):
    """Members that cannot be averaged (different lesions, labels or missing scores)."""


@dataclass(frozen=True)
class FoldTests:
    """One fold's test lesions, as the folds file `source` has them."""

    fold: int
    lesions: set[str]
    source: str


@dataclass(frozen=True)
class Ensemble:
    """An ensemble of training tasks, built on each of `backbones` (which may include `all`)."""

    name: str
    members: tuple[str, ...]
    backbones: tuple[str, ...]
    source: str | None = None

    def member_jobs(self, backbone: str, real_backbones: Sequence[str]) -> list[tuple[str, str]]:
        """(task, backbone) of every member model of this ensemble on `backbone`."""
        over = list(real_backbones) if backbone == ALL_BACKBONES else [backbone]
        return [(task, b) for task in self.members for b in over]


def plan_ensembles(tasks: Sequence[Task], backbones: Sequence[str], evaluate: Mapping[str, Any]) -> list[Ensemble]:
    """The ensembles the `evaluate` config section asks for, over the given task grid.

    Raises ValueError for a user ensemble that names an unknown task or reuses a task's or a source
    ensemble's name: both would make a results path mean two things.
    """
    task_names = [task.name for task in tasks]
    with_all = bool(evaluate["backbone_ensembles"]) and len(backbones) > 1
    per_backbone = (*backbones, ALL_BACKBONES) if with_all else tuple(backbones)
    ensembles: list[Ensemble] = []
    if evaluate["source_ensembles"]:
        by_source: dict[str, list[str]] = {}
        for task in tasks:
            if kind_of(task.kind).in_source_ensemble and task.source:
                by_source.setdefault(task.source, []).append(task.name)
        for source, members in by_source.items():
            if len(members) > 1:
                ensembles.append(Ensemble(f"ensemble-{source}", tuple(members), per_backbone, source))
    for name, members in evaluate["ensembles"].items():
        unknown = [m for m in members if m not in task_names]
        if unknown:
            raise ValueError(f"evaluate.ensembles.{name}: unknown task(s) {unknown}; the grid has {task_names}")
        if name in task_names or name in [e.name for e in ensembles]:
            raise ValueError(f"evaluate.ensembles.{name}: the name is already a task or a source ensemble")
        sources = {task.source for task in tasks if task.name in members}
        ensembles.append(Ensemble(name, tuple(members), per_backbone, sources.pop() if len(sources) == 1 else None))
    if with_all:
        ensembles += [Ensemble(task.name, (task.name,), (ALL_BACKBONES,), task.source) for task in tasks]
    return ensembles


def extra_comparisons(tasks: Sequence[Task], ensembles: Sequence[Ensemble]) -> list[tuple[str, str]]:
    """(model, reference) pairs compared besides each model against the baseline: every model with
    annotation heads and every ensemble of several tasks against the randomized control (a gain the
    control matches is not the annotations'), then the references each task's kind names
    (crowdsim-retrain against crowdsim-incremental, multihead-<source> against ensemble-<source>,
    ...), where the grid has them."""
    names = [task.name for task in tasks]
    present = set(names) | {ensemble.name for ensemble in ensembles}
    pairs: list[tuple[str, str]] = []
    for control in (task for task in tasks if kind_of(task.kind).randomized_control):
        pairs += [(task.name, control.name) for task in tasks
                  if task.name != control.name and kind_of(task.kind).learns_annotations(task)]
        pairs += [(ensemble.name, control.name) for ensemble in ensembles if ensemble.name not in names]
    pairs += [(task.name, reference) for task in tasks
              for reference in kind_of(task.kind).references(task, names) if reference in present]
    return list(dict.fromkeys(pairs))


def average_predictions(members: Mapping[str, pd.DataFrame], *, where: str = "",
                        fold_tests: FoldTests | None = None) -> pd.DataFrame:
    """The equal-weight average of the members' test-split scores, in the predictions.parquet layout.

    `members` maps a name (used in messages, e.g. the file) to that member's predictions table.
    Every member must hold the same test lesions with the same labels and no missing score;
    otherwise EnsembleError names the lesions. `where` prefixes messages (e.g. "ensemble-crowd/vgg16/fold0").
    Given `fold_tests`, each member's test rows must be exactly that fold's test lesions
    (crowdskin.evaluate.coverage.PredictionsError otherwise).
    """
    if not members:
        raise EnsembleError(f"{where}: no members")
    prefix = f"{where}: " if where else ""
    tests: dict[str, pd.DataFrame] = {}
    for name, frame in members.items():
        missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
        if missing:
            raise EnsembleError(f"{prefix}{name} lacks column(s) {missing}")
        if fold_tests is not None:
            check_test_predictions(frame, fold_tests.lesions, source=f"{prefix}{name}", fold=fold_tests.fold,
                                   folds_source=fold_tests.source)
        test = frame[frame["split"] == "test"]
        duplicated = test["image_id"][test["image_id"].duplicated()].tolist()
        if duplicated:
            raise EnsembleError(f"{prefix}{name} has lesions twice in its test split: {_few(duplicated)}")
        without_score = test["image_id"][test["score"].isna()].tolist()
        if without_score:
            raise EnsembleError(f"{prefix}{name} has no score (NaN) for lesion(s) {_few(without_score)}")
        tests[name] = test.set_index("image_id").sort_index()

    names = list(tests)
    first = tests[names[0]]
    for name in names[1:]:
        other = tests[name]
        if not first.index.equals(other.index):
            only_first = sorted(set(first.index) - set(other.index))
            only_other = sorted(set(other.index) - set(first.index))
            raise EnsembleError(
                f"{prefix}members test different lesions: only in {names[0]}: {_few(only_first)}; "
                f"only in {name}: {_few(only_other)}"
            )
        differs = first.index[first["label"].to_numpy() != other["label"].to_numpy()].tolist()
        if differs:
            raise EnsembleError(f"{prefix}{names[0]} and {name} disagree on the label of {_few(differs)}")

    scores = np.column_stack([tests[name]["score"].to_numpy(np.float64) for name in names])
    averaged = first.reset_index()[["image_id", "fold", "split", "label", "label_source"]].copy()
    averaged["score"] = scores.mean(axis=1)
    return averaged[PREDICTION_COLUMNS]


def _few(ids: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return f"{shown} (+{len(ids) - limit} more)" if len(ids) > limit else shown or "none"

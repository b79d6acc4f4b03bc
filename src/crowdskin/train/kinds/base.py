"""The base class of a task kind, and the registry that finds a kind by its name.

A kind is the model a task trains (nnU-Net's trainer variants: a base class with hooks, a variant
overrides the hooks it changes, looked up by name). Everything that differs between kinds is asked
of the kind: which tasks the config enables, which tables its jobs read, which lesions it trains on
with which labels, which annotation targets its heads regress, which settings change its result,
which model it starts from, and where it sits in the tables, ensembles and comparisons. Rules,
settings, examples, the training loop, ensembles and scores never compare kind names.

Nothing here imports Keras: the workflow asks the kinds while it builds the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from crowdskin.train.tasks import Task

# The tables a kind's jobs may read besides the images, folds and image cache (common.smk maps
# each name to the rule output that writes it).
TARGETS = "targets"  # results/<run>/crowd/targets.parquet: consensus targets and their spread
CROWD_LABELS = "crowd_labels"  # results/<run>/crowd/crowd_labels.parquet: labels of the crowd pool
VOTES = "votes"  # results/<run>/crowd/votes.parquet: every MTurk vote with its worker
ANNOTATIONS = "annotations"  # results/<run>/data/annotations.parquet: every raw ABC score with its annotator
TABLES = (TARGETS, CROWD_LABELS, VOTES, ANNOTATIONS)

# The annotator heads a kind may put on its model (crowdskin.train.annotators): `confusion`, a
# confusion matrix per annotator between the diagnosis and their 0/1 answer; `affine`, a scale and
# bias per annotator on a shared score.
ANNOTATOR_MODELS = ("confusion", "affine")


class ExamplesError(ValueError):
    """The inputs cannot make a training set for this job (message names the table and field)."""


@dataclass
class ExampleNotes:
    """What was left out and why, logged by the job and recorded in MLflow."""

    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExampleInputs:
    """What a kind's example hooks may read: the tables its jobs declared, the job's settings."""

    settings: Mapping[str, Any]
    fold: int
    seed: int = 0
    targets: pd.DataFrame | None = None
    crowd_labels: pd.DataFrame | None = None
    votes: pd.DataFrame | None = None
    annotations: pd.DataFrame | None = None


ANNOTATOR_TABLE_COLUMNS = ["annotator", "n_answers", "weight"]


@dataclass(frozen=True)
class AnnotatorAnswers:
    """Each annotator's own answers on a job's lesions: what an annotator head learns instead of a
    consensus. `annotators` has one row per annotator in the head's order (ANNOTATOR_TABLE_COLUMNS:
    their training answers and loss weight, plus what the kind reports beside what the head learns,
    e.g. Dawid-Skene's reliability); `answers` is long: image_id, annotator, answer. An affine
    head learns the answers standardised by `center` and `spread` (one pair for every annotator, so
    their differences in bias and scale survive)."""

    model: str
    annotators: pd.DataFrame
    answers: pd.DataFrame
    center: float = 0.0
    spread: float = 1.0

    def matrix(self, image_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(answers, availability), each (len(image_ids), n annotators), aligned with `image_ids`:
        the head's training targets. A lesion or annotator without an answer is unavailable (0)."""
        rows = pd.Index(pd.Series(image_ids, dtype=str))
        columns = pd.Index(self.annotators["annotator"].astype(str))
        wide = (self.answers.assign(image_id=self.answers["image_id"].astype(str),
                                    annotator=self.answers["annotator"].astype(str))
                .pivot_table(index="image_id", columns="annotator", values="answer", aggfunc="mean")
                .reindex(index=rows, columns=columns))
        values = wide.to_numpy(dtype=float)
        if self.model == "affine":
            values = (values - self.center) / self.spread
        available = ~np.isnan(values)
        return np.where(available, values, 0.0), available


# One head's training data, aligned with the chosen examples: the target and whether it exists
# (a real 0 counts; an unavailable row is left out of that head's loss).
HeadTargets = tuple[np.ndarray, np.ndarray]


class TaskKind:
    """A kind of model. Subclass it in a module of `crowdskin.train.kinds` (or a module named in
    `train.plugins`) and decorate it with `@register`; override only the hooks that differ.

    The defaults are the baseline's: expert labels, no annotation head, trained from scratch.
    """

    name: ClassVar[str]
    # Row order in the AUC table and figures (ENHANCE Table 5: the baseline, the multi-task models,
    # their ensembles, the randomized control, CROWDSIM); ensembles of several tasks sit at 20.
    order: ClassVar[int]
    # The tables its jobs read (TABLES), beyond the images, folds and image cache.
    reads: ClassVar[frozenset[str]] = frozenset()
    # The task whose model of the same backbone and fold this kind fine-tunes (None: built anew).
    starts_from: ClassVar[str | None] = None
    # Member of `ensemble-<source>`, ENHANCE's average of the single-feature models of a source.
    in_source_ensemble: ClassVar[bool] = False
    # Its test AUC is one of the truth checks' training rows (the baseline and the study's models).
    truth_checked: ClassVar[bool] = False
    # A randomized control: a head without annotation. Every model with annotation heads and every
    # ensemble of several tasks is compared with it, so that a gain from the annotations can be told
    # apart from a gain from any second head.
    randomized_control: ClassVar[bool] = False
    # The annotator head its model carries (ANNOTATOR_MODELS), None for none: its jobs write
    # annotators.parquet, what the head learned of each annotator.
    annotator_model: ClassVar[str | None] = None
    # The label sources (examples' `label_source`) the diagnosis output learns from; a kind that
    # learns the crowd through an annotator head leaves the crowd's labels out of the label's loss.
    label_sources: ClassVar[frozenset[str]] = frozenset({"expert", "crowd"})

    # --- the grid -------------------------------------------------------------------------------
    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        """The tasks of this kind that the validated `train` section enables."""
        raise NotImplementedError

    @classmethod
    def heads(cls, task: Task) -> tuple[str, ...]:
        """The annotation targets the model regresses besides the label, one linear head each."""
        return ()

    @classmethod
    def learns_annotations(cls, task: Task) -> bool:
        """Whether the model learns annotations besides the label (a head of any kind): such a model
        is compared with the randomized control, whose second head learns noise."""
        return bool(cls.heads(task))

    @classmethod
    def references(cls, task: Task, task_names: Sequence[str]) -> list[str]:
        """Models this task is compared with besides the baseline of its backbone (names of tasks
        or ensembles; those absent from the grid are skipped)."""
        return []

    # --- a job's settings -----------------------------------------------------------------------
    @classmethod
    def settings(cls, task: Task, train: Mapping[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
        """The job's science settings: `shared` (every job's) plus what this kind reads.

        A model with heads also depends on the loss weights; a single-output model does not."""
        if cls.heads(task):
            shared["loss_weights"] = dict(train["loss_weights"])
        return shared

    # --- a job's examples -----------------------------------------------------------------------
    @classmethod
    def choose(cls, expert: pd.DataFrame, crowd_train: pd.DataFrame) -> pd.DataFrame:
        """The job's lesions: `expert` is the fold without the crowd pool's training and validation
        part (all of its test split), `crowd_train` the pool's training part with crowd labels."""
        return expert

    @classmethod
    def crowd_labels(cls, crowd_labels: pd.DataFrame, inputs: ExampleInputs) -> pd.DataFrame:
        """image_id, crowd_label: the label each crowd-pool image trains with (kinds that read
        crowd labels)."""
        raise NotImplementedError(f"kind {cls.name} reads no crowd labels")

    @classmethod
    def head_targets(cls, task: Task, chosen: pd.DataFrame, inputs: ExampleInputs,
                     notes: ExampleNotes) -> dict[str, HeadTargets]:
        """Per head, its target and availability on `chosen`'s rows (in order)."""
        return {}

    @classmethod
    def annotator_answers(cls, task: Task, chosen: pd.DataFrame, inputs: ExampleInputs,
                          notes: ExampleNotes) -> AnnotatorAnswers | None:
        """The answers the annotator head learns on `chosen`'s lesions (kinds with an annotator_model)."""
        return None


_KINDS: dict[str, type[TaskKind]] = {}


def register(kind: type[TaskKind]) -> type[TaskKind]:
    """Class decorator: make `kind` known by its name. A name is registered once."""
    name = getattr(kind, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{kind.__qualname__} has no kind name")
    known = _KINDS.get(name)
    if known is not None and known is not kind and known.__qualname__ != kind.__qualname__:
        raise ValueError(f"task kind {name!r} is registered twice ({known.__module__}, {kind.__module__})")
    _KINDS[name] = kind
    return kind


def kind_of(name: str) -> type[TaskKind]:
    """The kind registered under `name`."""
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(f"unknown task kind {name!r}; known kinds: {sorted(_KINDS)}") from None


def registered_kinds() -> list[type[TaskKind]]:
    """Every registered kind, in table order."""
    return sorted(_KINDS.values(), key=lambda kind: (kind.order, kind.name))

"""Models that learn each annotator inside the network instead of a consensus (`train.annotators`).

ENHANCE proposes letting an annotation weigh by its annotator's expertise, "by modeling the
expertise of each annotator"; crowdskin otherwise aggregates before it trains. Here the network
learns every annotator from the image itself:

- `crowdsim-annotators`: CROWDSIM's retraining (b) where the crowd pool's images train through one
  learned confusion matrix per MTurk worker (Rodrigues & Pereira's crowd layer): the diagnosis
  output is the latent truth, each worker's predicted vote is that diagnosis passed through their
  matrix, and the loss is each worker's own vote, masked where they did not vote. The pool's crowd
  labels never reach the diagnosis' loss. Compared with `crowdsim-retrain`.
- `annotators-<source>-<feature>`: one scale and one bias per annotator on a shared score head,
  trained on each annotator's raw scores of one ABC feature (standardised once for all of them,
  so their differences survive). Compared with `multitask-<source>-<feature>`, which learns the
  consensus of the same scores.
- `-expertise` variants: each annotator's loss weighted by agreement (`EXPERTISE`), compared with
  the equally weighted model.

Each job writes what its head learned of each annotator (annotators.parquet: the confusion
matrices or the scales and biases) beside the estimate the crowd stage makes without the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from crowdskin.train.kinds.base import (
    ANNOTATIONS,
    CROWD_LABELS,
    VOTES,
    AnnotatorAnswers,
    ExampleInputs,
    ExampleNotes,
    ExamplesError,
    TaskKind,
    register,
)
from crowdskin.train.kinds.crowdsim import RetrainedWithThePool
from crowdskin.train.tasks import Task

EQUAL = "equal"
EXPERTISE = "expertise"  # the weighted variants' setting and task-name suffix


def expertise_weights(estimate: pd.Series) -> pd.Series:
    """Loss weights from an estimate of expertise (1 = perfect, 0 = no better than chance), scaled to
    mean 1 over the annotators; an annotator without an estimate weighs as the average one."""
    weights = estimate.astype(float).clip(lower=0.0)
    if not (weights > 0).any():
        return pd.Series(1.0, index=estimate.index)
    weights = weights.fillna(weights.mean())
    return weights / weights.mean()


def _annotator_settings(train: Mapping[str, Any], weights: str, **extra: Any) -> dict[str, Any]:
    annotators = train["annotators"]
    return {"weights": weights, "rate": float(annotators["rate"]), **extra}


class AnnotatorKind(TaskKind):
    """What every annotator kind shares: the loss weights (label vs the annotator head) and the
    annotators' settings; `weights` is EQUAL or EXPERTISE."""

    weights: ClassVar[str] = EQUAL

    @classmethod
    def enabled_weights(cls, train: Mapping[str, Any]) -> bool:
        return cls.weights in train["annotators"]["weights"]

    @classmethod
    def suffix(cls) -> str:
        return "" if cls.weights == EQUAL else f"-{EXPERTISE}"


def _votes_for(votes: pd.DataFrame | None, answers: str, task: str) -> pd.DataFrame:
    if votes is None:
        raise ExamplesError(f"task {task} needs the votes table")
    missing = {"image_id", "worker_id", "vote", "kept", f"reliability_{answers}"} - set(votes.columns)
    if missing:
        raise ExamplesError(f"votes table lacks column(s) {sorted(missing)}")
    return votes if answers == "all" else votes[votes["kept"].astype(bool)]


@register
class CrowdsimAnnotators(RetrainedWithThePool, AnnotatorKind):
    """The crowd pool's training images are every one with a vote of the chosen answers, a tie
    included: their label (the vote share, kept for the record) never reaches the loss."""

    name: ClassVar[str] = "crowdsim-annotators"
    order: ClassVar[int] = 46
    reads: ClassVar[frozenset[str]] = frozenset({CROWD_LABELS, VOTES})
    annotator_model: ClassVar[str | None] = "confusion"
    label_sources: ClassVar[frozenset[str]] = frozenset({"expert"})

    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        enabled = train["crowdsim"]["enabled"] and train["annotators"]["votes"]["enabled"]
        return [Task(cls.name, cls.name)] if enabled and cls.enabled_weights(train) else []

    @classmethod
    def settings(cls, task: Task, train: Mapping[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
        shared = super().settings(task, train, shared)
        shared["crowd_label"] = "vote_share"
        shared["loss_weights"] = dict(train["loss_weights"])
        shared["annotators"] = _annotator_settings(train, cls.weights, answers=train["annotators"]["votes"]["answers"],
                                                   diagonal=float(train["annotators"]["diagonal"]))
        return shared

    @classmethod
    def crowd_labels(cls, crowd_labels: pd.DataFrame, inputs: ExampleInputs) -> pd.DataFrame:
        votes = _votes_for(inputs.votes, inputs.settings["annotators"]["answers"], cls.name)
        share = votes.groupby(votes["image_id"].astype(str))["vote"].mean()
        return pd.DataFrame({"image_id": share.index, "crowd_label": share.to_numpy(float)})

    @classmethod
    def annotator_answers(cls, task: Task, chosen: pd.DataFrame, inputs: ExampleInputs,
                          notes: ExampleNotes) -> AnnotatorAnswers:
        settings = inputs.settings["annotators"]
        answers = settings["answers"]
        votes = _votes_for(inputs.votes, answers, task.name)
        # Only the pool's training images: a test image's votes would be the crowd's word on it.
        pool = chosen.loc[(chosen["split"] == "train") & (chosen["label_source"] == "crowd"), "image_id"]
        votes = votes[votes["image_id"].astype(str).isin(set(pool.astype(str)))]
        per_worker = votes.groupby("worker_id").agg(n_answers=("vote", "size"),
                                                    dawid_skene_reliability=(f"reliability_{answers}", "first"))
        per_worker = per_worker.sort_index()
        if settings["weights"] == EXPERTISE:
            weight = expertise_weights(2.0 * per_worker["dawid_skene_reliability"] - 1.0)
        else:
            weight = pd.Series(1.0, index=per_worker.index)
        table = pd.DataFrame({"annotator": per_worker.index.astype(str),
                              "n_answers": per_worker["n_answers"].to_numpy(), "weight": weight.to_numpy(float),
                              "dawid_skene_reliability": per_worker["dawid_skene_reliability"].to_numpy(float),
                              "answers": answers})
        notes.counts["annotators"] = len(table)
        notes.counts["annotator_answers"] = len(votes)
        if table.empty:
            notes.warnings.append(f"no {answers} votes on this fold's crowd training images: "
                                  "the crowd layer learns nothing")
        long = pd.DataFrame({"image_id": votes["image_id"].astype(str), "annotator": votes["worker_id"].astype(str),
                             "answer": votes["vote"].astype(float)})
        return AnnotatorAnswers("confusion", table, long)


@register
class CrowdsimAnnotatorsExpertise(CrowdsimAnnotators):
    name: ClassVar[str] = "crowdsim-annotators-expertise"
    order: ClassVar[int] = 47
    weights: ClassVar[str] = EXPERTISE

    @classmethod
    def references(cls, task: Task, task_names: Sequence[str]) -> list[str]:
        return [CrowdsimAnnotators.name]


def agreement(scores: pd.DataFrame) -> pd.Series:
    """Per annotator: the Pearson correlation of their scores with the mean of the other annotators'
    scores of the same lesions (NaN where fewer than three lesions are shared or a side is constant).
    `scores` has image_id, annotator, value. No diagnosis is involved, so every lesion may count."""
    wide = scores.pivot_table(index="image_id", columns="annotator", values="value", aggfunc="mean")
    total, count = wide.sum(axis=1, min_count=1), wide.notna().sum(axis=1)
    out = {}
    for annotator in wide.columns:
        own = wide[annotator]
        others = (total - own.fillna(0.0)) / (count - own.notna().astype(int))
        both = own.notna() & others.notna() & np.isfinite(others)
        out[annotator] = (float(np.corrcoef(own[both], others[both])[0, 1])
                          if both.sum() >= 3 and own[both].nunique() > 1 and others[both].nunique() > 1 else np.nan)
    return pd.Series(out, dtype=float)


@register
class Annotators(AnnotatorKind):
    name: ClassVar[str] = "annotators"
    order: ClassVar[int] = 16
    reads: ClassVar[frozenset[str]] = frozenset({ANNOTATIONS})
    annotator_model: ClassVar[str | None] = "affine"

    @classmethod
    def tasks(cls, train: Mapping[str, Any]) -> list[Task]:
        if not cls.enabled_weights(train):
            return []
        scores = train["annotators"]["scores"]
        return [Task(f"annotators-{source}-{feature}{cls.suffix()}", cls.name, source, feature)
                for source in scores["sources"] for feature in scores["features"]]

    @classmethod
    def settings(cls, task: Task, train: Mapping[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
        shared = super().settings(task, train, shared)
        shared["loss_weights"] = dict(train["loss_weights"])
        shared["annotators"] = _annotator_settings(train, cls.weights)
        return shared

    @classmethod
    def learns_annotations(cls, task: Task) -> bool:
        return True

    @classmethod
    def references(cls, task: Task, task_names: Sequence[str]) -> list[str]:
        return [f"multitask-{task.source}-{task.feature}"]

    @classmethod
    def annotator_answers(cls, task: Task, chosen: pd.DataFrame, inputs: ExampleInputs,
                          notes: ExampleNotes) -> AnnotatorAnswers:
        annotations = inputs.annotations
        if annotations is None:
            raise ExamplesError(f"task {task.name} needs the annotations table")
        missing = {"image_id", "source", "feature", "annotator_group", "annotator", "value"} - set(annotations.columns)
        if missing:
            raise ExamplesError(f"annotations table lacks column(s) {sorted(missing)}")
        rows = annotations[(annotations["source"] == task.source) & (annotations["feature"] == task.feature)]
        scores = pd.DataFrame({"image_id": rows["image_id"].astype(str),
                               "annotator": (rows["annotator_group"].astype(str) + "/" + rows["annotator"].astype(str)),
                               "value": rows["value"].astype(float)}).dropna(subset=["value"])
        # Training and validation lesions: the test lesions' scores stay out of every model.
        learned = set(chosen.loc[chosen["split"] != "test", "image_id"].astype(str))
        training = set(chosen.loc[chosen["split"] == "train", "image_id"].astype(str))
        answers = scores[scores["image_id"].isin(learned)]
        in_training = answers[answers["image_id"].isin(training)]
        if in_training.empty:
            raise ExamplesError(f"annotations table has no {task.source}/{task.feature} score of a training lesion "
                                f"of task {task.name}")
        per_annotator = in_training.groupby("annotator")["value"].size().rename("n_answers").sort_index()
        answers = answers[answers["annotator"].isin(per_annotator.index)]
        consensus_agreement = agreement(scores).reindex(per_annotator.index)
        weight = (expertise_weights(consensus_agreement) if inputs.settings["annotators"]["weights"] == EXPERTISE
                  else pd.Series(1.0, index=per_annotator.index))
        table = pd.DataFrame({"annotator": per_annotator.index.astype(str), "n_answers": per_annotator.to_numpy(),
                              "weight": weight.to_numpy(float), "agreement": consensus_agreement.to_numpy(float)})
        notes.counts["annotators"] = len(table)
        notes.counts["annotator_answers"] = len(in_training)
        spread = float(in_training["value"].std(ddof=0))
        return AnnotatorAnswers("affine", table, answers.rename(columns={"value": "answer"}),
                                center=float(in_training["value"].mean()), spread=spread if spread > 0 else 1.0)


@register
class AnnotatorsExpertise(Annotators):
    name: ClassVar[str] = "annotators-expertise"
    order: ClassVar[int] = 17
    weights: ClassVar[str] = EXPERTISE

    @classmethod
    def references(cls, task: Task, task_names: Sequence[str]) -> list[str]:
        return [f"annotators-{task.source}-{task.feature}"]

"""Crowd labels for candidate images from kept MTurk similarity answers.

Each kept answer is a vote: the chosen candidate gets the anchor's diagnosis (0/1). Votes are
aggregated per candidate by majority vote and by a model of worker reliability from crowd-kit
(Dawid-Skene by default, GLAD optionally), which weighs each worker by how often they agree with
the consensus on other images.

A majority-vote tie (as many votes for 0 as for 1) gives no label (NA) rather than a coin flip, so
the accuracy of majority vote is never flattered by luck; accuracy tables report how many
candidates each method decided.

`worker_reliability` gives the same fit's estimate of each worker: the probability that their vote
is the true label. It is what the aggregation weighs votes by, so on simulated data (where the
spammers are known) it says whether the model found the careless workers.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
from crowdkit.aggregation import GLAD, DawidSkene

Method = Literal["dawid_skene", "glad"]


def votes_from_answers(kept: pd.DataFrame) -> pd.DataFrame:
    """One vote per kept answer: columns worker, task (the chosen candidate), label (anchor's)."""
    chosen_id = kept["candidate_a_id"].where(kept["choice"] == "A", kept["candidate_b_id"])
    votes = pd.DataFrame(
        {
            "worker": kept["worker_id"].astype(str).to_numpy(),
            "task": chosen_id.astype(str).to_numpy(),
            "label": kept["anchor_label"].astype("Int8").to_numpy(),
            "assignment_id": kept["assignment_id"].astype(str).to_numpy(),
        }
    )
    unknown = votes["label"].isna()
    if unknown.any():
        ids = ", ".join(votes.loc[unknown, "assignment_id"].head(5))
        raise ValueError(f"{int(unknown.sum())} kept answer(s) have no anchor label (e.g. {ids}); "
                         "the ingest should have quarantined them")
    votes["label"] = votes["label"].astype(int)
    return votes


def majority_vote(votes: pd.DataFrame) -> pd.DataFrame:
    """Per task: n_votes, votes_abnormal, agreement (share of the larger side), label_majority."""
    grouped = votes.groupby("task")["label"]
    out = pd.DataFrame({"n_votes": grouped.size(), "votes_abnormal": grouped.sum()})
    votes_normal = out["n_votes"] - out["votes_abnormal"]
    out["agreement"] = np.maximum(out["votes_abnormal"], votes_normal) / out["n_votes"]
    label = pd.Series(pd.NA, index=out.index, dtype="Int8")
    label[out["votes_abnormal"] > votes_normal] = 1
    label[out["votes_abnormal"] < votes_normal] = 0
    out["label_majority"] = label
    return out


def _fit(data: pd.DataFrame, method: Method, n_iter: int) -> DawidSkene | GLAD:
    """crowd-kit's model of `method` fitted to votes (columns worker, task, label)."""
    if method == "dawid_skene":
        model = DawidSkene(n_iter=n_iter)
    elif method == "glad":
        model = GLAD(n_iter=n_iter)
    else:
        raise ValueError(f"crowd.labels.method must be 'dawid_skene' or 'glad', not {method!r}")
    with warnings.catch_warnings():
        # crowd-kit 1.4 still passes pandas 2 keywords (inplace=, copy=) that pandas 3 deprecates.
        warnings.filterwarnings("ignore", message=".*(inplace|copy) keyword.*")
        model.fit(data)
    return model


def reliability_labels(votes: pd.DataFrame, method: Method = "dawid_skene", n_iter: int = 100) -> pd.DataFrame:
    """Per task: label_reliability and p_abnormal (posterior probability of label 1)."""
    data = votes[["worker", "task", "label"]]
    if data["label"].nunique() < 2:
        # One class in all votes: the EM has nothing to separate, every task gets that class.
        only = int(data["label"].iloc[0]) if len(data) else 0
        tasks = data["task"].unique()
        return pd.DataFrame(
            {"label_reliability": pd.array([only] * len(tasks), dtype="Int8"), "p_abnormal": float(only)},
            index=pd.Index(tasks, name="task"),
        )
    model = _fit(data, method, n_iter)
    probas = model.probas_
    p_abnormal = probas[1] if 1 in probas.columns else pd.Series(0.0, index=probas.index)
    out = pd.DataFrame({"p_abnormal": p_abnormal.astype(float)})
    out["label_reliability"] = model.labels_.reindex(out.index).astype("Int8")
    out.index.name = "task"
    return out[["label_reliability", "p_abnormal"]]


WORKER_RELIABILITY_COLUMNS = ["worker_id", "n_votes", "reliability", "reliability_method"]


def _dawid_skene_reliability(model: DawidSkene, workers: pd.Index) -> pd.Series:
    """Per worker: sum over classes k of prior(k) * P(vote k | true k), the prior-weighted diagonal
    of their confusion matrix. crowd-kit keeps a row (worker, k) only for answers the worker gave,
    so a class they never answered contributes 0: they are never right about it."""
    errors, priors = model.errors_, model.priors_
    answered = errors.index.get_level_values("label")
    reliability = pd.Series(0.0, index=workers)
    for k in priors.index:
        right = errors.loc[answered == k, k].droplevel("label").astype(float)
        reliability += float(priors[k]) * right.reindex(workers, fill_value=0.0)
    return reliability


def _glad_reliability(model: GLAD, data: pd.DataFrame) -> pd.Series:
    """Per worker: GLAD's P(vote is the true label) = sigmoid(alpha_worker * exp(beta_task)), averaged
    over the tasks they answered (crowd-kit stores beta on the log scale)."""
    alpha = data["worker"].map(model.alphas_).to_numpy(float)
    beta = data["task"].map(model.betas_).to_numpy(float)
    correct = 1.0 / (1.0 + np.exp(-alpha * np.exp(beta)))
    return pd.Series(correct, index=data.index).groupby(data["worker"]).mean()


def worker_reliability(kept: pd.DataFrame, method: Method = "dawid_skene", n_iter: int = 100) -> pd.DataFrame:
    """One row per worker with a kept answer: n_votes, reliability (the fitted model's probability that
    their vote is the true label, 0..1), reliability_method.

    The fit is `reliability_labels`' on the same votes (crowd-kit's EM is deterministic), so these are
    the weights behind the crowd labels. Reliability is NaN where the model is not fitted (every vote
    of one class: nothing tells a right vote from a wrong one).
    """
    if kept.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in WORKER_RELIABILITY_COLUMNS})
    votes = votes_from_answers(kept)
    data = votes[["worker", "task", "label"]]
    n_votes = data.groupby("worker").size()
    if data["label"].nunique() < 2:
        reliability = pd.Series(np.nan, index=n_votes.index)
    else:
        model = _fit(data, method, n_iter)
        reliability = (_dawid_skene_reliability(model, n_votes.index) if method == "dawid_skene"
                       else _glad_reliability(model, data))
    table = pd.DataFrame({"worker_id": n_votes.index.astype(str), "n_votes": n_votes.to_numpy(),
                          "reliability": reliability.reindex(n_votes.index).to_numpy(float),
                          "reliability_method": method})
    return table[WORKER_RELIABILITY_COLUMNS].sort_values("worker_id", ignore_index=True)


VOTE_COLUMNS = ["image_id", "worker_id", "vote", "kept", "assignment_id", "reliability_kept", "reliability_all"]


def annotator_votes(decisions: pd.DataFrame, method: Method = "dawid_skene", n_iter: int = 100) -> pd.DataFrame:
    """Every vote of every usable answer with its worker, for models that learn each worker.

    `decisions` is the MTurk funnel's table (crowdskin.crowd.mturk.apply_filters): `kept` says
    whether the funnel kept the answer. Beside each vote its worker's reliability by `method`
    fitted on the kept answers and on all usable ones (`worker_reliability`; NaN for a worker with
    no kept answer), so a job can weigh a worker's answers without fitting the model again.
    Columns: VOTE_COLUMNS, one row per usable answer.
    """
    usable = decisions[decisions["usable"].astype(bool)].reset_index(drop=True)
    if usable.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in VOTE_COLUMNS})
    kept = usable["rejected_by"].isna().to_numpy()
    votes = votes_from_answers(usable)
    table = pd.DataFrame({"image_id": votes["task"], "worker_id": votes["worker"], "vote": votes["label"],
                          "kept": kept, "assignment_id": votes["assignment_id"]})
    for answers, rows in (("kept", usable[kept]), ("all", usable)):
        estimate = worker_reliability(rows, method, n_iter).set_index("worker_id")["reliability"]
        table[f"reliability_{answers}"] = table["worker_id"].map(estimate).astype(float)
    return table[VOTE_COLUMNS]


def candidate_pool(assignments: pd.DataFrame) -> pd.DataFrame:
    """The images shown to the crowd as candidates (one column, image_id, sorted): CROWDSIM's pool.

    Taken from every ingested assignment, before the MTurk funnel, so the pool, and with it every
    expert-only training set that leaves the pool out, does not change with the filter settings:
    a stricter filter changes the crowd labels, never which images the baselines train on.
    """
    ids = pd.concat([assignments["candidate_a_id"], assignments["candidate_b_id"]]).dropna().astype(str)
    return pd.DataFrame({"image_id": sorted(set(ids))})


def true_candidate_labels(assignments: pd.DataFrame, images: pd.DataFrame | None = None) -> pd.Series:
    """Known diagnosis per candidate image: the image table's `abnormal` where present, else the
    label the MTurk task carried for that candidate. NA where neither knows."""
    from_tasks = pd.concat(
        [
            assignments[["candidate_a_id", "candidate_a_label"]].set_axis(["image_id", "label"], axis=1),
            assignments[["candidate_b_id", "candidate_b_label"]].set_axis(["image_id", "label"], axis=1),
        ]
    ).dropna().drop_duplicates("image_id").set_index("image_id")["label"].astype("Int8")
    if images is None or images.empty:
        return from_tasks
    from_images = images.dropna(subset=["abnormal"]).drop_duplicates("image_id").set_index("image_id")["abnormal"]
    return from_images.astype("Int8").combine_first(from_tasks).astype("Int8")


def crowd_labels(
    kept: pd.DataFrame,
    *,
    true_labels: pd.Series | None = None,
    method: Method = "dawid_skene",
    n_iter: int = 100,
) -> pd.DataFrame:
    """One row per candidate image that received a vote.

    Columns: image_id, n_votes, votes_abnormal, agreement, label_majority, label_reliability,
    p_abnormal, reliability_method, true_label (NA where unknown).
    """
    columns = ["image_id", "n_votes", "votes_abnormal", "agreement", "label_majority",
               "label_reliability", "p_abnormal", "reliability_method", "true_label"]
    if kept.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    votes = votes_from_answers(kept)
    table = majority_vote(votes).join(reliability_labels(votes, method, n_iter))
    table["reliability_method"] = method
    table.index.name = "image_id"
    table = table.reset_index()
    if true_labels is not None:
        table["true_label"] = table["image_id"].map(true_labels).astype("Int8")
    else:
        table["true_label"] = pd.array([pd.NA] * len(table), dtype="Int8")
    return table[columns].sort_values("image_id", ignore_index=True)


def label_accuracy(labels: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of each aggregation against the known true labels.

    `accuracy` is over the candidates a method decided; `accuracy_all` counts an undecided
    candidate (a majority tie) as wrong, so the two methods compare on the same candidates.
    """
    known = labels[labels["true_label"].notna()]
    rows = []
    for method, column in (("majority_vote", "label_majority"), ("reliability", "label_reliability")):
        decided = known[known[column].notna()]
        correct = (decided[column].astype(int) == decided["true_label"].astype(int)).sum()
        rows.append(
            {
                "method": (method if method == "majority_vote" or not len(labels)
                           else str(labels["reliability_method"].iloc[0])),
                "candidates_with_votes": len(labels),
                "candidates_with_truth": len(known),
                "decided": len(decided),
                "correct": int(correct),
                "accuracy": float(correct / len(decided)) if len(decided) else float("nan"),
                "accuracy_all": float(correct / len(known)) if len(known) else float("nan"),
            }
        )
    return pd.DataFrame(rows)

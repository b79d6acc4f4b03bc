"""What the workflow recovered, compared with the synthetic default's known truth.

The embedded synthetic dataset (`crowdskin.synthetic`) draws every lesion from known properties and
writes them to ``truth/images.csv`` (true asymmetry class 0/1/2, number of border lobes, number and
names of colours, diagnosis) and ``truth/workers.csv`` (which simulated MTurk workers are spammers).
Only on these data can the stages be checked against the answer rather than against each other:

- `automated_vs_truth`: do the automated ABC algorithms measure what was drawn? Per feature, the
  share of lesions whose score equals the truth (meaningful for the asymmetry class, the colour
  count and each colour's presence flag, whose scales match the truth's) and the Spearman rank
  correlation (the only meaningful figure for the border score, which counts abrupt border segments
  on a 0..8 scale rather than lobes, so it can only *rank* lesions as the lobe count does).
- `annotations_vs_truth`: are the simulated raters' raw scores on the truth's scale, as simulated
  (truth + per-rater bias + noise)? Per source and feature: exact agreement, mean absolute error
  and Spearman correlation of every single score.
- `consensus_vs_truth`: does the training target keep the signal? The ENHANCE target is a mean of
  per-annotator z-scores, so only its *order* can be compared with the truth: Spearman correlation
  per source and feature.
- `spread_vs_ambiguity`: does the annotators' disagreement on a lesion say how ambiguous it was
  drawn (``ambiguity`` in truth/images.csv: an ambiguous lesion raises every student's and crowd
  worker's noise)? Per source with several annotators per lesion: Spearman correlation of the
  consensus stage's spread (``std``, the population std of the annotators' z-scores), averaged
  over the lesion's ABC features, with the true ambiguity; and per feature.
- `funnel_vs_spammers`: do the CROWDSIM rules remove the simulated spammers' answers and spare the
  careful workers'? Precision and recall at the assignment level, per rule alone and for the funnel.
- `reliability_per_worker` and `reliability_vs_truth`: does the crowd labels' Dawid–Skene fit know
  which workers to trust? Each simulated worker's estimated reliability against their accuracy on
  the same votes, judged by the true diagnoses: Spearman over workers, and the AUC of the estimate
  at telling careful workers from spammers.
- `training_auc`: the baseline's and each multi-task model's test AUC, from the scores' summary.
- `learned_workers` and `annotators_vs_truth`: do the models that learn each annotator inside the
  network know them? A crowd layer's per-worker reliability (the diagonal of its confusion
  matrices, averaged over the folds) against each simulated worker's accuracy, beside Dawid–Skene's
  on the same votes; an annotator head's per-student bias against the bias each student was drawn with.

`summarise` turns these tables into one row per check against `FLOORS`, the least value each
statistic should reach on the default data. A value below its floor is reported as a fail; nothing
here stops a run.

Each function takes the workflow's tables as written (tables.py) and the truth as read from its
CSV, validates the columns it reads (ValueError naming the missing one) and returns one row per
check. Missing recovered values are left out of a row's statistics and counted, never imputed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from crowdskin.crowd.labels import votes_from_answers
from crowdskin.evaluate.stats import auc
from crowdskin.tables import AUTOMATED_COLORS
from crowdskin.train.kinds.disagreement import SPREAD_SUFFIX

# The truth's column for each ABC feature; the crowd, student and automated feature names match.
FEATURES = ("asymmetry", "border", "color")
# The automated table's score column for each feature, and what of the truth it should recover.
AUTOMATED_SCORES = {"asymmetry": "asymmetry_class", "border": "border_score", "color": "color_score"}
TRUTH_IMAGE_COLUMNS = ("image_id", *FEATURES, "colors")
TRUTH_WORKER_COLUMNS = ("worker_id", "is_spammer")
# The `feature` of spread_vs_ambiguity's row that averages a lesion's spread over its ABC features.
SPREAD_MEAN = "mean"

AGREEMENT_COLUMNS = ["feature", "n_truth", "n", "exact_agreement", "spearman"]
ANNOTATION_COLUMNS = ["source", "feature", "n_truth", "n", "exact_agreement", "mean_abs_error", "spearman"]
CONSENSUS_COLUMNS = ["source", "feature", "n_truth", "n", "spearman"]
SPREAD_COLUMNS = ["source", "feature", "n_truth", "n", "n_ambiguous", "mean_spread_clear", "mean_spread_ambiguous",
                  "spearman"]
SPAMMER_COLUMNS = ["rule", "n", "spam", "true_positives", "false_positives", "false_negatives",
                   "precision", "recall"]
WORKER_COLUMNS = ["worker_id", "is_spammer", "n_votes", "n_votes_with_truth", "empirical_accuracy",
                  "estimated_reliability", "reliability_method"]
RELIABILITY_COLUMNS = ["answers", "statistic", "n_truth", "n", "n_spammers", "value"]
AUC_COLUMNS = ["model", "kind", "source", "backbone", "n_folds", "mean_auc", "sd_auc", "pooled_auc", "pooled_ci_low",
               "pooled_ci_high", "n_pooled", "note"]
SUMMARY_COLUMNS = ["check", "kind", "table", "row", "statistic", "value", "floor", "status", "n_truth", "n", "note"]
# The statistics of `reliability_vs_truth`, by row.
RELIABILITY_SPEARMAN = "spearman: estimated reliability vs empirical accuracy"
RELIABILITY_AUC = "AUC: estimated reliability, careful workers vs spammers"


def trained_kinds() -> tuple[str, ...]:
    """The kinds of model whose test AUC `training_auc` reports (the baseline and the study's
    single-feature multi-task models: each kind says whether it is one)."""
    from crowdskin.train.kinds import registered_kinds

    return tuple(kind.name for kind in registered_kinds() if kind.truth_checked)


def require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    """Raise ValueError naming the first of `columns` that `frame` (called `name`) lacks."""
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"{name}: missing column {column!r} (has {list(frame.columns)})")


def spearman(x: Sequence[float] | pd.Series, y: Sequence[float] | pd.Series) -> float:
    """Spearman's rho, NaN when it is undefined (fewer than 2 pairs or a constant side).

    Checked here rather than left to scipy, which returns NaN for these too but warns, and a warning
    in a report script is noise: an undefined correlation is an expected outcome on a tiny subset.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _truth_images(truth_images: pd.DataFrame) -> pd.DataFrame:
    require_columns(truth_images, TRUTH_IMAGE_COLUMNS, "truth_images")
    truth = truth_images.assign(image_id=truth_images["image_id"].astype(str))
    duplicated = truth["image_id"].duplicated()
    if duplicated.any():
        # A duplicated id would silently double-count its lesion in every join below.
        raise ValueError(f"truth_images: duplicated image_id {truth.loc[duplicated, 'image_id'].iloc[0]!r}")
    return truth.set_index("image_id")


def _agreement(recovered: pd.Series, true: pd.Series) -> dict[str, float | int]:
    """Statistics of `recovered` against `true` (same index) over the pairs where both are known."""
    pairs = pd.DataFrame({"recovered": pd.to_numeric(recovered, errors="coerce").astype(float),
                          "true": pd.to_numeric(true, errors="coerce").astype(float)}).dropna()
    n = len(pairs)
    return {
        "n_truth": int(true.notna().sum()),
        "n": n,
        "exact_agreement": float((pairs["recovered"] == pairs["true"]).mean()) if n else float("nan"),
        "mean_abs_error": float((pairs["recovered"] - pairs["true"]).abs().mean()) if n else float("nan"),
        "spearman": spearman(pairs["recovered"], pairs["true"]),
    }


def true_color_flags(truth_images: pd.DataFrame) -> pd.DataFrame:
    """One boolean column per reference colour (index image_id): was it painted on the lesion?"""
    truth = _truth_images(truth_images)
    painted = truth["colors"].fillna("").astype(str).str.split("|")
    return pd.DataFrame({name: painted.map(lambda names, n=name: n in names) for name in AUTOMATED_COLORS},
                        index=truth.index)


def automated_vs_truth(automated: pd.DataFrame, truth_images: pd.DataFrame) -> pd.DataFrame:
    """Per feature of the automated table: agreement and rank correlation with the drawn truth.

    Rows: ``asymmetry`` (class vs true class), ``border`` (score vs true lobe count), ``color``
    (colour count vs number of painted colours), then ``color_<name>`` for each reference colour
    (detected flag vs painted). Columns: feature, n_truth (lesions in both tables), n (of those with a
    score), exact_agreement, spearman. Lesions absent from the truth (another dataset) are ignored.
    """
    require_columns(automated, ["image_id", *AUTOMATED_SCORES.values(),
                                *(f"color_{name}" for name in AUTOMATED_COLORS)], "automated")
    truth = _truth_images(truth_images)
    recovered = automated.assign(image_id=automated["image_id"].astype(str)).set_index("image_id")
    common = recovered.index.intersection(truth.index)
    recovered, truth = recovered.loc[common], truth.loc[common]
    flags = true_color_flags(truth.reset_index())
    rows = []
    for feature, column in AUTOMATED_SCORES.items():
        stats = _agreement(recovered[column], truth[feature])
        rows.append({"feature": feature, **stats, "n_truth": len(common)})
    for name in AUTOMATED_COLORS:
        # boolean -> float keeps NA as NaN, so an unscored lesion drops out instead of counting as absent
        detected = recovered[f"color_{name}"].astype("Float64").astype(float)
        stats = _agreement(detected, flags[name].astype(float))
        rows.append({"feature": f"color_{name}", **stats, "n_truth": len(common)})
    return pd.DataFrame(rows)[AGREEMENT_COLUMNS]


def annotations_vs_truth(annotations: pd.DataFrame, truth_images: pd.DataFrame) -> pd.DataFrame:
    """Per source x feature of the long annotations table: every single score against the truth.

    The automated source's border score is on another scale (see the module docstring), so its
    exact agreement and error say little; its Spearman still does. Features the truth lacks are
    skipped. Columns: source, feature, n_truth (lesions of the truth the source scored), n (scores),
    exact_agreement, mean_abs_error, spearman.
    """
    require_columns(annotations, ["image_id", "source", "feature", "value"], "annotations")
    truth = _truth_images(truth_images)
    scores = annotations[annotations["feature"].isin(FEATURES)].assign(image_id=annotations["image_id"].astype(str))
    scores = scores[scores["image_id"].isin(truth.index)]
    rows = []
    for (source, feature), group in scores.groupby(["source", "feature"], sort=True):
        true = truth.loc[group["image_id"], feature].set_axis(group.index)
        stats = _agreement(group["value"], true)
        rows.append({"source": source, "feature": feature, **stats, "n_truth": int(group["image_id"].nunique())})
    return pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)


def consensus_vs_truth(targets: pd.DataFrame, truth_images: pd.DataFrame) -> pd.DataFrame:
    """Per source x feature of the consensus targets: Spearman correlation with the true value.

    Only available targets count (an unannotated lesion has no target). Columns: source, feature,
    n_truth (lesions of the truth with a target row), n (available), spearman.
    """
    require_columns(targets, ["image_id", "source", "feature", "target", "available"], "targets")
    truth = _truth_images(truth_images)
    rows_of_truth = targets[targets["feature"].isin(FEATURES)].assign(image_id=targets["image_id"].astype(str))
    rows_of_truth = rows_of_truth[rows_of_truth["image_id"].isin(truth.index)]
    rows = []
    for (source, feature), group in rows_of_truth.groupby(["source", "feature"], sort=True):
        available = group[group["available"].astype(bool)]
        true = truth.loc[available["image_id"], feature].set_axis(available.index)
        stats = _agreement(available["target"], true)
        rows.append({"source": source, "feature": feature, "n_truth": len(group), "n": stats["n"],
                     "spearman": stats["spearman"]})
    return pd.DataFrame(rows, columns=CONSENSUS_COLUMNS)


def spread_vs_ambiguity(targets: pd.DataFrame, truth_images: pd.DataFrame) -> pd.DataFrame:
    """Per source of the consensus targets: does the annotators' spread rank lesions as the true ambiguity?

    A lesion's spread on a feature is the targets' ``std`` where at least two annotators scored it
    (one annotator has no spread: its std 0 would read as perfect agreement). Rows per source: first
    ``SPREAD_MEAN``, each lesion's spread averaged over the features it has one for, then one row per
    feature. Sources with no lesion scored twice (the automated one) get no row. Columns: source,
    feature, n_truth (lesions of the truth with a target row of the source), n (of those with a
    spread), n_ambiguous (of those, ambiguity > 0), mean_spread_clear and mean_spread_ambiguous (the
    mean spread of the clear and the ambiguous ones), spearman (spread vs ambiguity).
    """
    require_columns(targets, ["image_id", "source", "feature", "n_annotators", "std"], "targets")
    require_columns(truth_images, ["ambiguity"], "truth_images")
    truth = _truth_images(truth_images)
    ambiguity = pd.to_numeric(truth["ambiguity"], errors="coerce")
    scored = targets[targets["feature"].isin(FEATURES)].assign(image_id=targets["image_id"].astype(str))
    scored = scored[scored["image_id"].isin(truth.index)]
    spread = pd.to_numeric(scored["std"], errors="coerce").where(scored["n_annotators"] >= 2)
    scored = scored.assign(spread=spread)
    rows = []
    for source, group in scored.groupby("source", sort=True):
        if group["spread"].isna().all():
            continue
        per_feature = [(feature, part.groupby("image_id")["spread"].mean())
                       for feature, part in group.groupby("feature", sort=True)]
        for feature, lesions in [(SPREAD_MEAN, group.groupby("image_id")["spread"].mean()), *per_feature]:
            pairs = pd.DataFrame({"spread": lesions, "true": ambiguity.reindex(lesions.index)}).dropna()
            clear, ambiguous = pairs.loc[pairs["true"] == 0, "spread"], pairs.loc[pairs["true"] > 0, "spread"]
            rows.append({"source": source, "feature": feature, "n_truth": len(lesions), "n": len(pairs),
                         "n_ambiguous": len(ambiguous),
                         "mean_spread_clear": float(clear.mean()) if len(clear) else float("nan"),
                         "mean_spread_ambiguous": float(ambiguous.mean()) if len(ambiguous) else float("nan"),
                         "spearman": spearman(pairs["spread"], pairs["true"])})
    return pd.DataFrame(rows, columns=SPREAD_COLUMNS)


SPREAD_HEAD_COLUMNS = ["model", "source", "backbone", "head", "n_truth", "n", "n_ambiguous",
                       "mean_prediction_clear", "mean_prediction_ambiguous", "spearman"]


def spread_heads_vs_ambiguity(predictions: pd.DataFrame, truth_images: pd.DataFrame) -> pd.DataFrame:
    """Does a model's disagreement head rank its test lesions as the true ambiguity?

    `predictions`: the predictions.parquet rows of the models with spread heads (columns
    ``prediction_<feature>_std``), every fold, with columns model, source and backbone added. Only the
    test split counts, pooled over the folds (each lesion is tested once in k-fold). Per (model,
    backbone): first ``SPREAD_MEAN``, each lesion's spread predictions averaged over its spread heads,
    then one row per head; a head predicts for every lesion, whether or not its annotators' spread is
    known. Columns: `SPREAD_HEAD_COLUMNS`.
    """
    require_columns(predictions, ["model", "source", "backbone", "split", "image_id"], "predictions")
    require_columns(truth_images, ["ambiguity"], "truth_images")
    ambiguity = pd.to_numeric(_truth_images(truth_images)["ambiguity"], errors="coerce")
    heads = [c.removeprefix("prediction_") for c in predictions.columns
             if c.startswith("prediction_") and c.endswith(SPREAD_SUFFIX)]  # the disagreement kind's spread heads
    test = predictions[predictions["split"] == "test"].assign(image_id=lambda d: d["image_id"].astype(str))
    rows = []
    for (model, source, backbone), group in test.groupby(["model", "source", "backbone"], sort=True):
        own = [h for h in heads if group[f"prediction_{h}"].notna().any()]
        if not own:
            continue
        by_lesion = group.groupby("image_id")[[f"prediction_{h}" for h in own]].mean()
        for head, values in [(SPREAD_MEAN, by_lesion.mean(axis=1)),
                             *[(h, by_lesion[f"prediction_{h}"]) for h in own]]:
            pairs = pd.DataFrame({"prediction": values, "true": ambiguity.reindex(values.index)}).dropna()
            clear, ambiguous = pairs.loc[pairs["true"] == 0, "prediction"], pairs.loc[pairs["true"] > 0, "prediction"]
            rows.append({"model": model, "source": source, "backbone": backbone, "head": head,
                         "n_truth": len(values), "n": len(pairs), "n_ambiguous": len(ambiguous),
                         "mean_prediction_clear": float(clear.mean()) if len(clear) else float("nan"),
                         "mean_prediction_ambiguous": float(ambiguous.mean()) if len(ambiguous) else float("nan"),
                         "spearman": spearman(pairs["prediction"], pairs["true"])})
    return pd.DataFrame(rows, columns=SPREAD_HEAD_COLUMNS)


def _precision_recall(rule: str, rejected: pd.Series, spam: pd.Series) -> dict[str, object]:
    tp = int((rejected & spam).sum())
    fp = int((rejected & ~spam).sum())
    fn = int((~rejected & spam).sum())
    return {"rule": rule, "n": len(spam), "spam": int(spam.sum()), "true_positives": tp, "false_positives": fp,
            "false_negatives": fn, "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan")}


def _is_true(values: pd.Series) -> pd.Series:
    # workers.csv round-trips booleans as the strings "True"/"False"; a bool column passes as is.
    return values.astype(str).str.strip().str.lower().isin(["1", "1.0", "true", "yes"])


def funnel_vs_spammers(decisions: pd.DataFrame, truth_workers: pd.DataFrame) -> pd.DataFrame:
    """Precision and recall of the MTurk filters at removing the simulated spammers' assignments.

    Positive = an assignment by a spammer; predicted = rejected. One row per ``flag_<rule>`` column
    of `decisions` (that rule alone, whatever rule the funnel charged the assignment to; usable
    assignments only, as quarantined ones were never shown to the rules), then ``all rules``: the
    funnel's verdict (any ``rejected_by``, ingest quarantine included) on every assignment. Rows
    without a worker id cannot be judged and are left out; a worker id missing from the truth is an
    error, since its answers would otherwise be silently counted as careful.
    """
    require_columns(decisions, ["worker_id", "rejected_by"], "decisions")
    require_columns(truth_workers, TRUTH_WORKER_COLUMNS, "truth_workers")
    spammer = pd.Series(_is_true(truth_workers["is_spammer"]).to_numpy(),
                        index=truth_workers["worker_id"].astype(str))
    judged = decisions[decisions["worker_id"].notna()].copy()
    judged["worker_id"] = judged["worker_id"].astype(str)
    unknown = sorted(set(judged["worker_id"]) - set(spammer.index))
    if unknown:
        raise ValueError(f"truth_workers: {len(unknown)} worker(s) of the decisions missing, e.g. {unknown[:3]}")
    spam = judged["worker_id"].map(spammer).astype(bool)
    usable = judged["usable"].astype(bool) if "usable" in judged else pd.Series(True, index=judged.index)
    rows = [
        _precision_recall(column.removeprefix("flag_"), judged.loc[usable, column].astype(bool), spam[usable])
        for column in judged.columns if column.startswith("flag_")
    ]
    rows.append(_precision_recall("all rules", judged["rejected_by"].notna(), spam))
    return pd.DataFrame(rows, columns=SPAMMER_COLUMNS)


def _spammer_flags(truth_workers: pd.DataFrame) -> pd.Series:
    """is_spammer (bool) indexed by worker_id, from truth/workers.csv."""
    require_columns(truth_workers, TRUTH_WORKER_COLUMNS, "truth_workers")
    return pd.Series(_is_true(truth_workers["is_spammer"]).to_numpy(), index=truth_workers["worker_id"].astype(str))


def reliability_per_worker(reliability: pd.DataFrame, kept: pd.DataFrame, truth_images: pd.DataFrame,
                           truth_workers: pd.DataFrame) -> pd.DataFrame:
    """One row per simulated worker: the crowd stage's estimate of their reliability and their accuracy.

    `reliability` is the crowd stage's worker table (crowdskin.crowd.labels.worker_reliability: the
    model's probability that a worker's vote is the true label), `kept` the answers it was fitted on.
    A vote says "the chosen candidate has the anchor's diagnosis"; empirical_accuracy is the share of a
    worker's votes for which the chosen candidate's true ``abnormal`` agrees, over the votes whose
    candidate the truth knows (n_votes_with_truth). Every worker of the truth gets a row: one whose
    answers were all filtered out has n_votes 0 and no estimate (NaN), so the statistics count them as
    missing rather than lose them. A worker of `reliability` or `kept` missing from the truth is an
    error. Columns: worker_id, is_spammer, n_votes, n_votes_with_truth, empirical_accuracy,
    estimated_reliability, reliability_method.
    """
    require_columns(reliability, ["worker_id", "reliability", "reliability_method"], "worker_reliability")
    require_columns(kept, ["worker_id", "assignment_id", "choice", "candidate_a_id", "candidate_b_id",
                           "anchor_label"], "kept")
    spammer = _spammer_flags(truth_workers)
    diagnosis = _truth_images(truth_images)
    require_columns(diagnosis, ["abnormal"], "truth_images")
    estimates = reliability.assign(worker_id=reliability["worker_id"].astype(str)).set_index("worker_id")
    votes = (votes_from_answers(kept) if len(kept)
             else pd.DataFrame({"worker": pd.Series(dtype=str), "task": pd.Series(dtype=str),
                                "label": pd.Series(dtype=int)}))
    unknown = sorted((set(estimates.index) | set(votes["worker"])) - set(spammer.index))
    if unknown:
        raise ValueError(f"truth_workers: {len(unknown)} worker(s) of the crowd stage missing, e.g. {unknown[:3]}")
    true_label = pd.to_numeric(votes["task"].map(diagnosis["abnormal"]), errors="coerce")
    judged = votes.assign(correct=(votes["label"] == true_label).astype(float).where(true_label.notna()))
    per_worker = judged.groupby("worker")["correct"]
    methods = estimates["reliability_method"].dropna().unique()
    table = pd.DataFrame({
        "worker_id": spammer.index,
        "is_spammer": spammer.to_numpy(),
        "n_votes": per_worker.size().reindex(spammer.index, fill_value=0).to_numpy(),
        "n_votes_with_truth": per_worker.count().reindex(spammer.index, fill_value=0).to_numpy(),
        "empirical_accuracy": per_worker.mean().reindex(spammer.index).to_numpy(float),
        "estimated_reliability": pd.to_numeric(estimates["reliability"], errors="coerce")
                                   .reindex(spammer.index).to_numpy(float),
        "reliability_method": methods[0] if len(methods) == 1 else "|".join(map(str, methods)),
    })
    return table[WORKER_COLUMNS].sort_values("worker_id", ignore_index=True)


def reliability_vs_truth(per_worker: pd.DataFrame, answers: str = "kept") -> pd.DataFrame:
    """How well the estimated reliabilities of `reliability_per_worker` match the simulated workers.

    Rows: `RELIABILITY_SPEARMAN` (over the workers with an estimate and a judged vote: does the
    estimate rank workers as their accuracy does?) and `RELIABILITY_AUC` (over the workers with an
    estimate: the probability that a careful worker's estimate exceeds a spammer's, ties counting
    one half; NaN unless both kinds of worker have an estimate). Columns: answers (which answers the
    model was fitted on: `kept` = after the MTurk funnel, as the crowd labels are; `all` = every
    answer, spammers' included, which tests the model itself), statistic, n_truth (workers of the
    truth), n (workers the value is over), n_spammers (spammers among them), value.
    """
    require_columns(per_worker, ["is_spammer", "empirical_accuracy", "estimated_reliability"], "per_worker")
    spammer = _is_true(per_worker["is_spammer"])
    estimate = pd.to_numeric(per_worker["estimated_reliability"], errors="coerce")
    accuracy = pd.to_numeric(per_worker["empirical_accuracy"], errors="coerce")
    both = estimate.notna() & accuracy.notna()
    estimated = estimate.notna()
    careful = (~spammer[estimated]).astype(int).to_numpy()
    return pd.DataFrame([
        {"answers": answers, "statistic": RELIABILITY_SPEARMAN, "n_truth": len(per_worker), "n": int(both.sum()),
         "n_spammers": int(spammer[both].sum()), "value": spearman(estimate[both], accuracy[both])},
        {"answers": answers, "statistic": RELIABILITY_AUC, "n_truth": len(per_worker), "n": int(estimated.sum()),
         "n_spammers": int(spammer[estimated].sum()), "value": auc(careful, estimate[estimated].to_numpy(float))},
    ], columns=RELIABILITY_COLUMNS)


def training_auc(auc_summary: pd.DataFrame) -> pd.DataFrame:
    """The baseline's and each multi-task model's rows of the scores' summary (results/scores/
    auc_summary.csv): fold mean and sd of the test AUC, pooled out-of-fold AUC with its CI, per
    backbone (``all``: averaged over the backbones). Ensembles, the randomized control and the CROWDSIM
    tasks are left to the AUC table. Columns: `AUC_COLUMNS`.
    """
    require_columns(auc_summary, AUC_COLUMNS, "auc_summary")
    trained = auc_summary[auc_summary["kind"].isin(trained_kinds())]
    return trained[AUC_COLUMNS].reset_index(drop=True)


# --- annotators learned inside the network ------------------------------------------------------

LEARNED_WORKER_COLUMNS = ["model", "backbone", "answers", "worker_id", "is_spammer", "n_votes", "empirical_accuracy",
                          "learned_reliability", "dawid_skene_reliability", "n_folds"]
ANNOTATORS_COLUMNS = ["model", "backbone", "answers", "estimator", "statistic", "n_truth", "n", "n_spammers", "value"]
CROWD_LAYER = "crowd layer"
DAWID_SKENE = "Dawid-Skene"
LAYER_MINUS_DAWID_SKENE = "crowd layer - Dawid-Skene"
ANNOTATOR_HEAD = "annotator head"
MEAN_DEVIATION = "mean deviation from the others"
BIAS_SPEARMAN = "spearman: estimated bias vs simulated bias"


def learned_workers(learned: pd.DataFrame, votes: pd.DataFrame, truth_images: pd.DataFrame,
                    truth_workers: pd.DataFrame) -> pd.DataFrame:
    """One row per (crowd-layer model, backbone, simulated worker): the reliability the model learned
    (mean over the folds that saw the worker), Dawid–Skene's on the same answers (the crowd stage's,
    fitted without the image), and the worker's accuracy on those answers judged by the true
    diagnoses. `learned` is the jobs' annotators.parquet rows with model, backbone and fold columns;
    `votes` the crowd stage's votes table. Columns: `LEARNED_WORKER_COLUMNS`."""
    if learned.empty or "reliability" not in learned:  # no crowd layer in the grid
        return pd.DataFrame(columns=LEARNED_WORKER_COLUMNS)
    learned = learned[learned["annotator_model"] == "confusion"]
    require_columns(learned, ["model", "backbone", "fold", "annotator", "reliability", "answers"], "annotators")
    require_columns(votes, ["image_id", "worker_id", "vote", "kept", "reliability_kept", "reliability_all"], "votes")
    spammer = _spammer_flags(truth_workers)
    diagnosis = _truth_images(truth_images)["abnormal"]
    rows = []
    for (model, backbone, answers), jobs in learned.groupby(["model", "backbone", "answers"], sort=False):
        used = votes if answers == "all" else votes[votes["kept"].astype(bool)]
        truth = pd.to_numeric(used["image_id"].astype(str).map(diagnosis), errors="coerce")
        correct = (used["vote"] == truth).astype(float).where(truth.notna())
        per_worker = correct.groupby(used["worker_id"].astype(str))
        mean = jobs.groupby(jobs["annotator"].astype(str))["reliability"]
        ds = used.groupby(used["worker_id"].astype(str))[f"reliability_{answers}"].first()
        unknown = sorted(set(mean.groups) - set(spammer.index))
        if unknown:
            raise ValueError(f"truth_workers: {len(unknown)} worker(s) of {model} missing, e.g. {unknown[:3]}")
        rows.append(pd.DataFrame({
            "model": model, "backbone": backbone, "answers": answers, "worker_id": spammer.index,
            "is_spammer": spammer.to_numpy(),
            "n_votes": per_worker.size().reindex(spammer.index, fill_value=0).to_numpy(),
            "empirical_accuracy": per_worker.mean().reindex(spammer.index).to_numpy(float),
            "learned_reliability": mean.mean().reindex(spammer.index).to_numpy(float),
            "dawid_skene_reliability": ds.reindex(spammer.index).to_numpy(float),
            "n_folds": mean.size().reindex(spammer.index, fill_value=0).to_numpy(),
        }))
    if not rows:
        return pd.DataFrame(columns=LEARNED_WORKER_COLUMNS)
    return pd.concat(rows, ignore_index=True)[LEARNED_WORKER_COLUMNS]


def mean_deviation(annotations: pd.DataFrame, source: str, feature: str) -> pd.Series:
    """Per annotator (`<annotator_group>/<annotator>`): the mean of their score minus the mean of the
    other annotators' scores of the same lesion, the estimate of a bias made without the image."""
    rows = annotations[(annotations["source"] == source) & (annotations["feature"] == feature)]
    name = rows["annotator_group"].astype(str) + "/" + rows["annotator"].astype(str)
    wide = rows.assign(name=name).pivot_table(index="image_id", columns="name", values="value", aggfunc="mean")
    total, count = wide.sum(axis=1, min_count=1), wide.notna().sum(axis=1)
    others = {column: (total - wide[column].fillna(0.0)) / (count - wide[column].notna().astype(int))
              for column in wide.columns}
    return pd.Series({column: float((wide[column] - others[column]).replace([np.inf, -np.inf], np.nan).mean())
                      for column in wide.columns}, dtype=float)


def annotators_vs_truth(workers: pd.DataFrame, learned: pd.DataFrame, annotations: pd.DataFrame,
                        truth_students: pd.DataFrame) -> pd.DataFrame:
    """The statistics of the annotator models against the truth, per model and backbone.

    Crowd layers (`workers`, from `learned_workers`): `reliability_vs_truth`'s Spearman with each
    worker's accuracy and AUC of careful workers vs spammers, for the learned reliabilities (`crowd
    layer`), for Dawid–Skene's on the same answers, and their difference (`crowd layer -
    Dawid-Skene`, at least 0 where the network knows the workers as well as the model without the
    image). Annotator heads (`learned`'s affine rows): Spearman of each student's bias (mean over
    folds) with the bias they were drawn with, beside the same statistic for `mean_deviation`.
    Columns: `ANNOTATORS_COLUMNS`."""
    rows = []
    for (model, backbone, answers), per_worker in workers.groupby(["model", "backbone", "answers"], sort=False):
        by = {}
        for estimator, column in ((CROWD_LAYER, "learned_reliability"), (DAWID_SKENE, "dawid_skene_reliability")):
            judged = reliability_vs_truth(per_worker.assign(estimated_reliability=per_worker[column]), answers)
            by[estimator] = judged.set_index("statistic")
            rows += [{"model": model, "backbone": backbone, "estimator": estimator, **row}
                     for row in judged.to_dict("records")]
        for statistic in by[CROWD_LAYER].index:
            layer, ds = by[CROWD_LAYER].loc[statistic], by[DAWID_SKENE].loc[statistic]
            rows.append({"model": model, "backbone": backbone, "answers": answers, "estimator": LAYER_MINUS_DAWID_SKENE,
                         "statistic": statistic, "n_truth": layer["n_truth"], "n": min(layer["n"], ds["n"]),
                         "n_spammers": layer["n_spammers"], "value": float(layer["value"] - ds["value"])})
    affine = learned[learned["annotator_model"] == "affine"] if len(learned) else learned
    if len(affine):
        require_columns(truth_students, ["annotator_group", "annotator", "bias"], "truth_students")
        true_bias = pd.Series(truth_students["bias"].to_numpy(float),
                              index=truth_students["annotator_group"].astype(str) + "/"
                              + truth_students["annotator"].astype(str))
        for (model, backbone, source, feature), jobs in affine.groupby(["model", "backbone", "source", "feature"],
                                                                       sort=False):
            estimates = {ANNOTATOR_HEAD: jobs.groupby(jobs["annotator"].astype(str))["bias"].mean(),
                         MEAN_DEVIATION: mean_deviation(annotations, source, feature)}
            for estimator, estimate in estimates.items():
                both = estimate.reindex(true_bias.index).notna()
                rows.append({"model": model, "backbone": backbone, "answers": "scores", "estimator": estimator,
                             "statistic": BIAS_SPEARMAN, "n_truth": len(true_bias), "n": int(both.sum()),
                             "n_spammers": 0, "value": spearman(estimate.reindex(true_bias.index)[both],
                                                                true_bias[both])})
    return pd.DataFrame(rows, columns=ANNOTATORS_COLUMNS)


# --- explanations --------------------------------------------------------------------------------

RELEVANCE_COLUMNS = ["model", "backbone", "n", "relevance_lesion", "lesion_area"]
SHORTCUT_COLUMNS = ["model", "backbone", "n", "auc_clean", "auc_trap", "auc_drop", "relevance_marker_trap",
                    "marker_rise", "marker_auroc"]


def relevance_in_lesion(summary: pd.DataFrame) -> pd.DataFrame:
    """The explanation stage's summary (results/scores/relevance.csv): each model's mean share of
    relevance inside the lesion mask, beside the lesions' mean area share, what a map spread evenly
    over the image would score. Columns: `RELEVANCE_COLUMNS`."""
    require_columns(summary, ["model", "backbone", "lesions", "relevance_lesion", "lesion_area"], "relevance")
    return summary.rename(columns={"lesions": "n"})[RELEVANCE_COLUMNS].reset_index(drop=True)


def shortcut_vs_reference(scores: pd.DataFrame, relevance: pd.DataFrame, model: str, reference: str) -> pd.DataFrame:
    """The shortcut trap against what is known by construction, per backbone, for `model` (the
    baseline, trained with the marker agreeing with the diagnosis) and `reference` (the same model
    trained on the same lesions without the marker): the AUC on clean and on trap images and its
    drop (results/scores/shortcut.csv), and on the trap images that show the marker, the mean share
    of relevance on it; for `model`, how much more of it the marker takes than in the reference's
    maps of the same images (`marker_rise`, paired per lesion) and how well that share tells the
    two models' maps apart (`marker_auroc`: AUROC over lesions, the model's maps positive).
    Columns: `SHORTCUT_COLUMNS`."""
    require_columns(scores, ["model", "backbone", "auc_clean", "auc_trap", "auc_drop"], "shortcut")
    require_columns(relevance, ["model", "backbone", "fold", "image_id", "marker_trap", "relevance_marker_trap"],
                    "explanations")
    keys = ["fold", "image_id"]
    rows = []
    for backbone, of_backbone in relevance.groupby("backbone", sort=False):
        shown = of_backbone[of_backbone["marker_trap"].astype(bool)]
        mine = shown.loc[shown["model"] == model, [*keys, "relevance_marker_trap"]]
        theirs = shown.loc[shown["model"] == reference, [*keys, "relevance_marker_trap"]]
        paired = mine.merge(theirs, on=keys, suffixes=("", "_reference")).dropna()
        for name, own in ((model, mine), (reference, theirs)):
            score = scores[(scores["model"] == name) & (scores["backbone"] == backbone)]
            row = {"model": name, "backbone": backbone, "n": len(own),
                   "relevance_marker_trap": own["relevance_marker_trap"].mean(), "marker_rise": np.nan,
                   "marker_auroc": np.nan,
                   **{column: float(score[column].iloc[0]) if len(score) else np.nan
                      for column in ("auc_clean", "auc_trap", "auc_drop")}}
            if name == model and len(paired) >= 2:
                row["marker_rise"] = float((paired["relevance_marker_trap"]
                                            - paired["relevance_marker_trap_reference"]).mean())
                values = np.concatenate([paired["relevance_marker_trap"], paired["relevance_marker_trap_reference"]])
                row["marker_auroc"] = auc(np.repeat([1, 0], len(paired)), values)
            rows.append(row)
    return pd.DataFrame(rows, columns=SHORTCUT_COLUMNS)


# --- floors and the summary -------------------------------------------------------------------

Status = Literal["pass", "fail", "no value", "no floor"]


@dataclass(frozen=True)
class Floor:
    """One check of the summary: a statistic of one row of a truth table, and the least value it should reach.

    `row` selects the row by its key columns (values compared as text); `per` names a column to
    check each value of separately (the baseline's AUC per backbone). `floor` None reports the value
    without judging it (`note` says why). `kind` "target" marks what the work aims for rather than
    what the data already give: it may fail today, and says so.
    """

    check: str
    table: str
    row: Mapping[str, str]
    statistic: str
    floor: float | None
    kind: Literal["floor", "target"] = "floor"
    per: str | None = None
    note: str = ""


# How the floors were set: on the default synthetic data (config/config.yaml's `synthetic` section:
# 500 lesions, 12 MTurk workers of whom 4 spammers; automated variant `study`), generated with seed 42
# (the default run) and with seeds 1, 3, 7 and 11, and run through the package functions. Each floor is
# the lower of (seed 42's value - 0.1) and (the lowest of the five - 0.05), rounded down to 0.05, so
# that another seed passes and a real regression fails. The comment after each floor gives seed 42's
# value and the lowest of the five. Re-measure them (tests/test_truth.py's floors test prints the
# values below a floor) when the synthetic generator or a stage's algorithm changes on purpose.
# Last re-measured when the generator got ambiguous lesions (`synthetic.ambiguity`), which raise every
# rater's noise on about a quarter of the lesions: the floors those data broke at one of the five seeds were
# lowered by the same rule (each says so); the others still held at all five and were kept.
FLOORS: tuple[Floor, ...] = (
    # Automated ABC (table automated.csv)
    Floor("automated border score ranks lesions as the lobe count", "automated", {"feature": "border"},
          "spearman", 0.70),  # 0.843, 0.831
    Floor("automated colour count ranks lesions as the painted colours", "automated", {"feature": "color"},
          "spearman", 0.70),  # 0.814, 0.776
    Floor("automated white flag agrees with the painted white", "automated", {"feature": "color_white"},
          "exact_agreement", 0.90),  # 0.994, 0.992
    Floor("automated blue-gray flag agrees with the painted blue-gray", "automated",
          {"feature": "color_blue_gray"}, "exact_agreement", 0.85),  # 0.992, 0.974
    Floor("automated asymmetry class ranks lesions as the true class", "automated", {"feature": "asymmetry"},
          "spearman", None,  # 0.029, -0.036
          note="no floor: the study variant's centring does not recover asymmetry (variant paper does)"),
    # Raw scores of the simulated raters (annotations.csv): truth + rater bias + noise
    Floor("student asymmetry scores rank lesions as the truth", "annotations",
          {"source": "student", "feature": "asymmetry"}, "spearman", 0.45),  # 0.574, 0.533 (was 0.55; 0.533 at seed 1)
    Floor("student border scores rank lesions as the truth", "annotations",
          {"source": "student", "feature": "border"}, "spearman", 0.80),  # 0.853, 0.842
    Floor("student colour scores rank lesions as the truth", "annotations",
          {"source": "student", "feature": "color"}, "spearman", 0.55),  # 0.672, 0.624 (was 0.65; 0.624 at seed 7)
    Floor("crowd asymmetry scores rank lesions as the truth", "annotations",
          {"source": "crowd", "feature": "asymmetry"}, "spearman", 0.40),  # 0.541, 0.491 (was 0.50; 0.491 at seed 1)
    Floor("crowd border scores rank lesions as the truth", "annotations",
          {"source": "crowd", "feature": "border"}, "spearman", 0.75),  # 0.824, 0.790
    Floor("crowd colour scores rank lesions as the truth", "annotations",
          {"source": "crowd", "feature": "color"}, "spearman", 0.50),  # 0.605, 0.570 (was 0.60; 0.570 at seed 1)
    # Consensus targets (consensus.csv): the training targets keep the order of the truth
    Floor("student asymmetry target ranks lesions as the truth", "consensus",
          {"source": "student", "feature": "asymmetry"}, "spearman", 0.75),  # 0.800, 0.783
    Floor("student border target ranks lesions as the truth", "consensus",
          {"source": "student", "feature": "border"}, "spearman", 0.85),  # 0.952, 0.938
    Floor("student colour target ranks lesions as the truth", "consensus",
          {"source": "student", "feature": "color"}, "spearman", 0.80),  # 0.873, 0.838
    Floor("crowd asymmetry target ranks lesions as the truth", "consensus",
          {"source": "crowd", "feature": "asymmetry"}, "spearman", 0.60),  # 0.764, 0.667 (was 0.70; 0.667 at seed 3)
    Floor("crowd border target ranks lesions as the truth", "consensus",
          {"source": "crowd", "feature": "border"}, "spearman", 0.85),  # 0.921, 0.921
    Floor("crowd colour target ranks lesions as the truth", "consensus",
          {"source": "crowd", "feature": "color"}, "spearman", 0.75),  # 0.804, 0.786
    # Annotators' spread (ambiguity.csv): the std of the raters' z-scores on a lesion, averaged over
    # its ABC features, against the drawn ambiguity, which raises every rater's noise on the lesion
    Floor("student annotations' spread ranks lesions as the true ambiguity", "ambiguity",
          {"source": "student", "feature": SPREAD_MEAN}, "spearman", 0.50),  # 0.673, 0.590
    Floor("crowd annotations' spread ranks lesions as the true ambiguity", "ambiguity",
          {"source": "crowd", "feature": SPREAD_MEAN}, "spearman", 0.35),  # 0.568, 0.446
    # The disagreement models' spread heads (spread_heads.csv): trained on the annotators' spread,
    # do they predict, from the image alone, which test lesions are ambiguous? Measured by the whole
    # default run (seed 42) and by its disagreement jobs at seeds 1, 3, 7, 11 (`snakemake
    # results/seed<N>/truth/spread_heads.csv --config seed=<N> run_name=seed<N>`): the small CNN
    # learns a weak ranking (the blurred border shows at 32 px; the annotators' spread is noisy).
    Floor("student disagreement heads rank test lesions as the true ambiguity", "spread_heads",
          {"source": "student", "head": SPREAD_MEAN}, "spearman", 0.10, per="backbone"),  # 0.225, 0.194
    Floor("crowd disagreement heads rank test lesions as the true ambiguity", "spread_heads",
          {"source": "crowd", "head": SPREAD_MEAN}, "spearman", 0.0, per="backbone"),  # 0.130, 0.130
    # The MTurk funnel (mturk_funnel.csv): every spammer answer rejected; careful workers' answers are
    # rejected too (impossible triplets, low confidence), hence the low precision by design.
    Floor("MTurk funnel rejects the spammers' answers (recall)", "mturk_funnel", {"rule": "all rules"},
          "recall", 0.90),  # 1.000, 1.000
    Floor("MTurk funnel's rejections are spammers' answers (precision)", "mturk_funnel", {"rule": "all rules"},
          "precision", 0.30),  # 0.401, 0.384
    # Dawid-Skene's worker reliabilities (dawid_skene.csv). Fitted on the funnel's kept answers (what
    # the crowd labels use) they are reported, not judged: the funnel leaves no spammer (the AUC is
    # undefined) and few votes per careful worker. Fitted on every answer, the model must tell the
    # spammers from the careful workers by itself: AUC 0.78 and Spearman with each worker's accuracy
    # 0.59 at seed 42 (AUC 0.56-0.94, Spearman 0.49-0.92 at seeds 1, 3, 7, 11: twelve workers).
    Floor("Dawid-Skene on every answer tells careful workers from spammers", "dawid_skene",
          {"answers": "all", "statistic": RELIABILITY_AUC}, "value", 0.65),
    Floor("Dawid-Skene on every answer ranks workers as their accuracy", "dawid_skene",
          {"answers": "all", "statistic": RELIABILITY_SPEARMAN}, "value", 0.40),
    Floor("Dawid-Skene on the kept answers ranks workers as their accuracy", "dawid_skene",
          {"answers": "kept", "statistic": RELIABILITY_SPEARMAN}, "value", None,
          note="no floor: too few kept votes per worker on the default data to estimate reliability"),
    Floor("Dawid-Skene on the kept answers tells careful workers from spammers", "dawid_skene",
          {"answers": "kept", "statistic": RELIABILITY_AUC}, "value", None,
          note="no floor: the MTurk funnel leaves no spammer for the model to judge on the default data"),
    # Training (auc.csv): the target of the training work, not yet reached by the tiny default.
    Floor("baseline pooled out-of-fold test AUC", "auc", {"model": "baseline"}, "pooled_auc", 0.80,
          kind="target", per="backbone"),
    # Explanations (relevance.csv): where the baseline's Grad-CAM maps fall. Seeds differ widely: at
    # seed 1 the baseline puts less of its maps on the lesions (0.261) than their area share (0.293).
    Floor("baseline's relevance mass in the lesion", "relevance", {"model": "baseline"}, "relevance_lesion",
          0.20, per="backbone"),  # 0.595, 0.261
    # The shortcut trap (shortcut.csv; config/shortcut.yaml, rate 0.9, reversed), each at seeds 42,
    # 1, 3, 7, 11 with the baseline and its marker-free reference alone (the other tasks do not
    # change them).
    Floor("baseline's AUC drops from clean to trap images", "shortcut", {"model": "baseline"}, "auc_drop",
          0.10, per="backbone"),  # 0.246, 0.246
    # A difference of two shares of a region of ~2.5 % of the image: the rule above would put its
    # floor below 0, so it asks only that the marker takes more (a third of the lowest seed's value).
    Floor("baseline's relevance on the marker exceeds the marker-free reference's", "shortcut",
          {"model": "baseline"}, "marker_rise", 0.01, per="backbone"),  # 0.065, 0.033
    Floor("relevance on the marker tells the shortcut baseline from the marker-free one (AUROC)", "shortcut",
          {"model": "baseline"}, "marker_auroc", 0.65, per="backbone"),  # 0.965, 0.746
    Floor("marker-free reference's AUC drop from clean to trap images", "shortcut", {"model": "clean-reference"},
          "auc_drop", None, per="backbone",
          note="no floor: reported; near 0 by construction (-0.024 to -0.008 at the five seeds)"),
    # Annotators learned inside the network (annotators.csv): the default's crowd layer on every usable
    # answer and its students' border head, at seeds 42, 1, 3, 7, 11 (`snakemake
    # results/seed<N>/truth/annotators.csv --config seed=<N> run_name=seed<N>`). Twelve workers and six
    # students: the values swing between seeds, and the floors with them. Dawid-Skene on the same
    # answers: Spearman 0.594, 0.490, 0.916, 0.685, 0.776; AUC 0.781, 0.562, 0.844, 0.938, 0.906.
    Floor("crowd layer ranks workers as their accuracy", "annotators",
          {"model": "crowdsim-annotators", "estimator": CROWD_LAYER, "statistic": RELIABILITY_SPEARMAN}, "value",
          0.25, per="backbone"),  # 0.678, 0.322
    Floor("crowd layer tells careful workers from spammers", "annotators",
          {"model": "crowdsim-annotators", "estimator": CROWD_LAYER, "statistic": RELIABILITY_AUC}, "value",
          0.50, per="backbone"),  # 0.781, 0.562
    # What the crowd layer is for: knowing the workers at least as well as the model that never sees
    # the image. Reached at seed 42 (+0.084, 0.000), not at the other seeds (Spearman -0.252 to -0.112;
    # AUC -0.375 to +0.125): a target, as the baseline's AUC is, not a floor.
    Floor("crowd layer ranks workers at least as well as Dawid-Skene (difference)", "annotators",
          {"model": "crowdsim-annotators", "estimator": LAYER_MINUS_DAWID_SKENE, "statistic": RELIABILITY_SPEARMAN},
          "value", 0.0, kind="target", per="backbone"),
    Floor("crowd layer tells spammers apart at least as well as Dawid-Skene (AUC difference)", "annotators",
          {"model": "crowdsim-annotators", "estimator": LAYER_MINUS_DAWID_SKENE, "statistic": RELIABILITY_AUC},
          "value", 0.0, kind="target", per="backbone"),
    Floor("student annotator head ranks the students as their drawn bias", "annotators",
          {"model": "annotators-student-border", "estimator": ANNOTATOR_HEAD, "statistic": BIAS_SPEARMAN}, "value",
          0.55, per="backbone"),  # 0.943, 0.600 (the mean deviation from the others: 0.943, 0.714)
)

# The tables of what training gives (the default run's truth_summary judges them; checking them
# needs the whole training grid).
TRAINED_TABLES = ("auc", "spread_heads", "relevance", "shortcut", "annotators")
# Tables of stages a config may leave out (the explanations, the shortcut trap): their checks are
# left out with them; every other table a check names must be there.
OPTIONAL_TABLES = ("relevance", "shortcut", "annotators")

# The column of each table that counts what a statistic is over, and the one that counts the truth's
# units it could have been over (the difference is what was missing); absent where a table has none.
_COUNTS = {"auc": ("n_pooled", None), "mturk_funnel": ("n", None), "spread_heads": ("n", "n_truth")}


def _status(value: float, floor: float | None) -> Status:
    if floor is None:
        return "no floor"
    if np.isnan(value):
        return "no value"
    return "pass" if value >= floor else "fail"


def _select(table: pd.DataFrame, check: Floor) -> list[tuple[str, pd.DataFrame]]:
    """(label of the row, its one-row frame, empty where absent) for each row `check` judges."""
    selected = table
    for key, value in check.row.items():
        selected = selected[selected[key].astype(str) == str(value)]
    where = ", ".join(f"{k}={v}" for k, v in check.row.items())
    if check.per is None:
        if len(selected) > 1:
            raise ValueError(f"{check.table}: {len(selected)} rows where {where}; the check {check.check!r} "
                             "needs one (or a `per` column)")
        return [(where, selected)]
    groups = [(f"{where}, {check.per}={value}", group) for value, group in selected.groupby(check.per, sort=False)]
    return groups or [(where, selected)]


def summarise(tables: Mapping[str, pd.DataFrame], floors: Sequence[Floor] = FLOORS) -> pd.DataFrame:
    """One row per check of `floors` on the truth tables (by name: automated, annotations, ...).

    A check whose row is absent, or whose value is NaN, is reported as "no value" rather than left
    out; one that matches several rows without a `per` column is an error (it would judge one of
    them at random). A `per` check gives one row per value of its column. Columns: `SUMMARY_COLUMNS`.
    """
    rows = []
    for check in floors:
        if check.table not in tables and check.table in OPTIONAL_TABLES:
            continue
        if check.table not in tables:
            raise ValueError(f"summary: no table {check.table!r} for check {check.check!r} (has {sorted(tables)})")
        table = tables[check.table]
        require_columns(table, [*check.row, check.statistic, *([check.per] if check.per else [])], check.table)
        n_column, n_truth_column = _COUNTS.get(check.table, ("n", "n_truth"))
        for where, row in _select(table, check):
            found = not row.empty
            value = float(pd.to_numeric(row[check.statistic], errors="coerce").iloc[0]) if found else float("nan")
            name = check.check if check.per is None or not found else f"{check.check} ({row[check.per].iloc[0]})"
            rows.append({
                "check": name, "kind": check.kind, "table": check.table, "row": where,
                "statistic": check.statistic, "value": value, "floor": check.floor,
                "status": _status(value, check.floor),
                "n_truth": row[n_truth_column].iloc[0] if found and n_truth_column in row else pd.NA,
                "n": row[n_column].iloc[0] if found and n_column in row else pd.NA,
                "note": "; ".join(filter(None, [check.note, "" if found else f"no row where {where}"])),
            })
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return summary.astype({"value": float, "floor": float, "n_truth": "Int64", "n": "Int64"})

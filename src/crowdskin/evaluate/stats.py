"""AUC statistics: ROC AUC, the paired DeLong test, stratified paired bootstrap, Holm's adjustment.

Conventions. `labels` are 0/1 (or booleans), 1 = positive (abnormal lesion); higher scores mean
"more positive". A score matrix has one row per lesion and one column per model (a 1-D score vector
is one column). With m positives X and n negatives Y, the kernel is

    psi(x, y) = 1 if x > y, 0.5 if x == y, 0 otherwise,

the AUC is the mean of psi(X_i, Y_j) over all m * n pairs (Mann-Whitney form, ties count one half),
and DeLong's structural components are V10(X_i) = mean_j psi(X_i, Y_j) (one per positive) and
V01(Y_j) = mean_i psi(X_i, Y_j) (one per negative). The covariance of the AUCs of several models on
the same lesions is S10 / m + S01 / n, where S10 and S01 are the sample covariances (divisor m - 1 and
n - 1) of the components across models (DeLong, DeLong & Clarke-Pearson, Biometrics 1988).

`delong_covariance` computes this in O(N log N) with midranks (Sun & Xu, IEEE Signal Processing
Letters 21(11), 2014); `delong_covariance_bruteforce` computes it from the definition above in
O(m * n) and is the reference the fast version must equal (tests compare them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

# Elements per chunk of bootstrap resamples (chunk rows x lesions); about 16 MB per float array.
_CHUNK_ELEMENTS = 2_000_000


# ----------------------------------------------------------------------------------------------------
# Inputs and midranks


def _split(labels: ArrayLike, scores: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Scores of the positives (m x k) and of the negatives (n x k), after checking the inputs."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise ValueError(f"scores must be a vector or a (lesions x models) matrix, got shape {s.shape}")
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"{y.shape[0]} labels but {s.shape[0]} rows of scores")
    if not np.isin(y, [0, 1]).all():
        raise ValueError("labels must be 0/1 or booleans")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (no NaN or infinity)")
    positive = y.astype(bool)
    return s[positive], s[~positive]


def _require_both_classes(x: FloatArray, y: FloatArray, at_least: int) -> None:
    if len(x) < at_least or len(y) < at_least:
        raise ValueError(f"needs at least {at_least} positive and {at_least} negative lesions, "
                         f"got {len(x)} and {len(y)}")


def _midranks(values: FloatArray) -> FloatArray:
    """1-based ranks along the last axis; tied values share the mean of their positions (midranks).

    One sort per row, so O(N log N): the first and last sorted position of each run of equal values
    are carried along the row with cumulative max / min.
    """
    n = values.shape[-1]
    order = np.argsort(values, axis=-1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=-1)
    position = np.broadcast_to(np.arange(n), values.shape)
    starts = np.ones(values.shape, dtype=bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends = np.ones(values.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, position, n - 1), axis=-1), axis=-1), axis=-1)
    ranks = np.empty(values.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return ranks


def _aucs_from_ranks(ranks: FloatArray, m: int) -> FloatArray:
    """AUC along the last axis from the joint midranks, the m positives first (Mann-Whitney U / mn)."""
    n = ranks.shape[-1] - m
    return (ranks[..., :m].sum(axis=-1) - m * (m + 1) / 2.0) / (m * n)


# ----------------------------------------------------------------------------------------------------
# AUC


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC, ties counting one half (equals sklearn's roc_auc_score); NaN when one class is absent."""
    x, y = _split(labels, scores)
    if x.shape[1] != 1:
        raise ValueError("auc takes one score vector")
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    return float(_aucs_from_ranks(_midranks(np.concatenate([x, y]).T), len(x))[0])


# ----------------------------------------------------------------------------------------------------
# DeLong


def _structural_components(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """AUCs (k), V10 (k x m) and V01 (k x n) by Sun & Xu's midranks: within the positives (tx), within
    the negatives (ty) and over both (tz). tz - tx of a positive counts the negatives below it (ties
    one half); tz - ty of a negative counts the positives below it."""
    m = len(x)
    n = len(y)
    tx = _midranks(x.T)
    ty = _midranks(y.T)
    tz = _midranks(np.concatenate([x, y]).T)
    aucs = _aucs_from_ranks(tz, m)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_covariance(labels: ArrayLike, scores_matrix: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """AUCs (k) and their DeLong covariance matrix (k x k) for k models on the same lesions, O(N log N)."""
    x, y = _split(labels, scores_matrix)
    _require_both_classes(x, y, 2)
    aucs, v10, v01 = _structural_components(x, y)
    covariance = np.atleast_2d(np.cov(v10)) / len(x) + np.atleast_2d(np.cov(v01)) / len(y)
    return aucs, covariance


def delong_covariance_bruteforce(labels: ArrayLike, scores_matrix: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """The definition `delong_covariance` must equal, in O(m * n) time and memory (for tests).

    psi(X_i, Y_j) = 1 if X_i > Y_j, 0.5 if equal, 0 otherwise, for every (positive, negative) pair and
    model r; AUC_r = mean of psi; V10_r(X_i) = mean over j, V01_r(Y_j) = mean over i;
    S10[r, s] = sum_i (V10_r(X_i) - AUC_r)(V10_s(X_i) - AUC_s) / (m - 1), S01 likewise over the
    negatives with n - 1; covariance = S10 / m + S01 / n.
    """
    x, y = _split(labels, scores_matrix)
    _require_both_classes(x, y, 2)
    m, k = x.shape
    n = len(y)
    aucs = np.empty(k)
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    for r in range(k):
        greater = x[:, r][:, None] > y[:, r][None, :]
        equal = x[:, r][:, None] == y[:, r][None, :]
        psi = np.where(greater, 1.0, np.where(equal, 0.5, 0.0))
        aucs[r] = psi.sum() / (m * n)
        v10[r] = psi.sum(axis=1) / n
        v01[r] = psi.sum(axis=0) / m
    d10 = v10 - aucs[:, None]
    d01 = v01 - aucs[:, None]
    s10 = np.einsum("ri,si->rs", d10, d10) / (m - 1)
    s01 = np.einsum("rj,sj->rs", d01, d01) / (n - 1)
    return aucs, s10 / m + s01 / n


def delong_variance(labels: ArrayLike, scores: ArrayLike) -> float:
    """DeLong variance of one model's AUC."""
    scores_array = np.asarray(scores, dtype=np.float64)
    if scores_array.ndim != 1:
        raise ValueError("delong_variance takes one score vector")
    return float(delong_covariance(labels, scores_array)[1][0, 0])


@dataclass(frozen=True)
class DeLongResult:
    """Paired DeLong test of AUC_a = AUC_b. `z` and `p` (two-sided, normal) are 0 and 1 when the
    difference and its variance are both 0 (identical rankings), NaN when only the variance is 0
    (e.g. a perfect model against a constant one: the normal approximation says nothing)."""

    auc_a: float
    auc_b: float
    difference: float
    variance: float
    z: float
    p: float
    covariance: FloatArray = field(compare=False, repr=False)


def delong(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> DeLongResult:
    """Paired DeLong test comparing two models' AUCs on the same lesions (needs >= 2 of each class)."""
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must be vectors of the same length, got {a.shape} and {b.shape}")
    x, y = _split(labels, np.column_stack([a, b]))
    _require_both_classes(x, y, 2)
    m, n = len(x), len(y)
    aucs, v10, v01 = _structural_components(x, y)
    covariance = np.cov(v10) / m + np.cov(v01) / n
    covariance.setflags(write=False)
    difference = float(aucs[0] - aucs[1])
    # From the components' differences rather than the 2x2 matrix, so identical rankings give exactly 0.
    variance = max(float(np.var(v10[0] - v10[1], ddof=1) / m + np.var(v01[0] - v01[1], ddof=1) / n), 0.0)
    if variance > 0.0:
        z = difference / math.sqrt(variance)
        p = math.erfc(abs(z) / math.sqrt(2.0))
    elif difference == 0.0:
        z, p = 0.0, 1.0
    else:
        z, p = float("nan"), float("nan")
    return DeLongResult(auc_a=float(aucs[0]), auc_b=float(aucs[1]), difference=difference, variance=variance,
                        z=z, p=p, covariance=covariance)


# ----------------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_auc_samples(labels: ArrayLike, scores_matrix: ArrayLike, *, n_resamples: int = 2000,
                          seed: int | np.random.Generator) -> FloatArray:
    """AUC of each model (columns) in each of n_resamples stratified bootstrap resamples (rows).

    Positives and negatives are resampled separately with replacement (so every resample keeps m and
    n), with the same lesions for every model (paired). Vectorised: midranks of a chunk of resamples at
    once. The same inputs and seed give the same samples.
    """
    x, y = _split(labels, scores_matrix)
    _require_both_classes(x, y, 1)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    m, k = x.shape
    n = len(y)
    out = np.empty((n_resamples, k))
    chunk = max(1, min(n_resamples, _CHUNK_ELEMENTS // (m + n)))
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        take_x = rng.integers(0, m, size=(rows, m))
        take_y = rng.integers(0, n, size=(rows, n))
        for r in range(k):
            joint = np.concatenate([x[take_x, r], y[take_y, r]], axis=1)
            out[start:start + rows, r] = _aucs_from_ranks(_midranks(joint), m)
    return out


def percentile_interval(samples: FloatArray, confidence: float) -> tuple[float, float]:
    """The percentile bootstrap interval of `samples` at `confidence` (e.g. 0.95: the 2.5th and 97.5th)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    low, high = np.quantile(samples, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low), float(high)


def bootstrap_auc_ci(labels: ArrayLike, scores: ArrayLike, *, n_resamples: int = 2000,
                     seed: int | np.random.Generator, confidence: float = 0.95) -> tuple[float, float, float]:
    """(AUC, low, high): the AUC and its stratified-bootstrap percentile confidence interval."""
    scores_array = np.asarray(scores, dtype=np.float64)
    if scores_array.ndim != 1:
        raise ValueError("bootstrap_auc_ci takes one score vector")
    samples = bootstrap_auc_samples(labels, scores_array, n_resamples=n_resamples, seed=seed)[:, 0]
    low, high = percentile_interval(samples, confidence)
    return auc(labels, scores_array), low, high


def bootstrap_auc_difference(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike, *,
                             n_resamples: int = 2000, seed: int | np.random.Generator,
                             confidence: float = 0.95) -> tuple[float, float, float]:
    """(AUC_a - AUC_b, low, high): the difference and its paired, stratified-bootstrap percentile interval."""
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must be vectors of the same length, got {a.shape} and {b.shape}")
    samples = bootstrap_auc_samples(labels, np.column_stack([a, b]), n_resamples=n_resamples, seed=seed)
    low, high = percentile_interval(samples[:, 0] - samples[:, 1], confidence)
    return auc(labels, a) - auc(labels, b), low, high


# ----------------------------------------------------------------------------------------------------
# Several comparisons


def holm(p_values: ArrayLike) -> FloatArray:
    """Holm-adjusted p-values, in the input order: the i-th smallest (0-based) times (k - i), made
    non-decreasing in that order and capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    k = len(p)
    adjusted_sorted = np.minimum(np.maximum.accumulate(p[order] * (k - np.arange(k))), 1.0)
    adjusted = np.empty(k)
    adjusted[order] = adjusted_sorted
    return adjusted


def simultaneous_intervals(differences: ArrayLike, variances: ArrayLike,
                           confidence: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Bonferroni-adjusted DeLong intervals of k AUC differences: difference +- z * sqrt(variance)
    with z the normal quantile at 1 - alpha / (2k), alpha = 1 - confidence.

    They are the intervals to show beside Holm-adjusted DeLong p-values: an interval that excludes 0
    has |z| above that quantile, so its unadjusted p is below alpha / k and its Holm p, at most k
    times the unadjusted p, below alpha. (Unadjusted bootstrap intervals have no such bond: one can
    clear 0 beside a Holm p of 0.16.) A variance of 0 gives the point itself.
    """
    from scipy.stats import norm

    d = np.asarray(differences, dtype=np.float64)
    v = np.asarray(variances, dtype=np.float64)
    if d.shape != v.shape or d.ndim != 1:
        raise ValueError(f"differences and variances must be vectors of one length, got {d.shape} and {v.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if (v < 0).any():
        raise ValueError("variances must be non-negative")
    if len(d) == 0:
        return d.copy(), d.copy()
    z = float(norm.ppf(1.0 - (1.0 - confidence) / (2.0 * len(d))))
    half = z * np.sqrt(v)
    return d - half, d + half

"""AUC statistics: sklearn agreement, fast DeLong = its definition, known answers, bootstrap, Holm."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from crowdskin.evaluate.stats import (
    auc,
    bootstrap_auc_ci,
    bootstrap_auc_difference,
    bootstrap_auc_samples,
    delong,
    delong_covariance,
    delong_covariance_bruteforce,
    delong_variance,
    holm,
)


def _tied_scores(seed: int, n: int = 300, columns: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores rounded to one decimal, so ties within and across classes are common."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.35).astype(int)
    effects = np.linspace(1.0, 0.3, columns)
    shared = rng.normal(size=n)  # correlated models, like models scored on the same lesions
    scores = np.round(labels[:, None] * effects + 0.6 * shared[:, None] + rng.normal(size=(n, columns)), 1)
    return labels, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_sklearn_with_ties(seed):
    labels, scores = _tied_scores(seed)
    assert len(np.unique(scores)) < len(scores) / 3  # heavily tied
    assert auc(labels, scores[:, 0]) == pytest.approx(roc_auc_score(labels, scores[:, 0]), rel=1e-12)
    assert auc(labels.astype(bool), scores[:, 0]) == pytest.approx(roc_auc_score(labels, scores[:, 0]), rel=1e-12)


def test_auc_is_nan_with_one_class():
    assert math.isnan(auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(auc([0, 0], [0.2, 0.5]))


@pytest.mark.parametrize("columns", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_delong_covariance_equals_bruteforce_with_ties(columns, seed):
    labels, scores = _tied_scores(seed, n=400, columns=columns)
    fast_aucs, fast = delong_covariance(labels, scores)
    brute_aucs, brute = delong_covariance_bruteforce(labels, scores)
    assert fast.shape == (columns, columns)
    np.testing.assert_allclose(fast_aucs, brute_aucs, rtol=1e-10)
    np.testing.assert_allclose(fast, brute, rtol=1e-10)
    np.testing.assert_allclose(fast_aucs, [roc_auc_score(labels, s) for s in scores.T], rtol=1e-12)


def test_delong_known_answer_by_hand():
    # 3 positives, 2 negatives, ties across the classes in both models.
    # Model a: positives X = (0.9, 0.6, 0.4), negatives Y = (0.5, 0.4).
    #   psi rows (per positive): 0.9 -> (1, 1); 0.6 -> (1, 1); 0.4 -> (0, 0.5)
    #   V10 = (1, 1, 0.25), V01 = (2/3, 5/6), AUC_a = 2.25 / 3 = 0.75
    #   S10 = ((1/4)^2 + (1/4)^2 + (1/2)^2) / 2 = 3/16; S01 = 2 (1/12)^2 / 1 = 1/72
    #   Var(AUC_a) = (3/16) / 3 + (1/72) / 2 = 9/144 + 1/144 = 10/144
    # Model b: X = (0.8, 0.1, 0.7), Y = (0.2, 0.7).
    #   psi rows: 0.8 -> (1, 1); 0.1 -> (0, 0); 0.7 -> (1, 0.5)
    #   V10 = (1, 0, 0.75), V01 = (2/3, 1/2), AUC_b = 1.75 / 3 = 7/12
    #   S10 = ((5/12)^2 + (7/12)^2 + (2/12)^2) / 2 = 39/144; S01 = 1/72
    #   Var(AUC_b) = 13/144 + 1/144 = 14/144
    # Cross terms: V10 deviations a (3, 3, -6)/12, b (5, -7, 2)/12 -> (15 - 21 - 12)/144 / 2 = -1/16;
    #   V01 deviations a (-1, 1)/12, b (1, -1)/12 -> -2/144 / 1 = -1/72
    #   Cov = (-1/16) / 3 + (-1/72) / 2 = -4/144
    # Difference 0.75 - 7/12 = 1/6; Var = (10 + 14 + 8)/144 = 2/9; z = (1/6) / sqrt(2/9) = 1 / (2 sqrt 2)
    # p = 2 (1 - Phi(z)) = erfc(z / sqrt 2) = erfc(1/4) = 0.72367...
    labels = [1, 1, 1, 0, 0]
    a = [0.9, 0.6, 0.4, 0.5, 0.4]
    b = [0.8, 0.1, 0.7, 0.2, 0.7]
    result = delong(labels, a, b)
    assert result.auc_a == pytest.approx(0.75, rel=1e-12)
    assert result.auc_b == pytest.approx(7 / 12, rel=1e-12)
    assert result.difference == pytest.approx(1 / 6, rel=1e-12)
    np.testing.assert_allclose(result.covariance, np.array([[10, -4], [-4, 14]]) / 144, rtol=1e-12)
    assert result.variance == pytest.approx(2 / 9, rel=1e-12)
    assert result.z == pytest.approx(1 / (2 * math.sqrt(2)), rel=1e-12)
    assert result.p == pytest.approx(math.erfc(0.25), rel=1e-12)
    assert result.p == pytest.approx(0.7236736, abs=1e-7)
    assert delong_variance(labels, a) == pytest.approx(10 / 144, rel=1e-12)
    assert delong_variance(labels, b) == pytest.approx(14 / 144, rel=1e-12)


def _normal_scores(rng: np.random.Generator, n_positive: int, n_negative: int, d: float) -> tuple:
    labels = np.r_[np.ones(n_positive, int), np.zeros(n_negative, int)]
    return labels, rng.normal(size=n_positive + n_negative) + d * labels


def test_delong_variance_matches_bootstrap_variance():
    rng = np.random.default_rng(20240601)
    labels, scores = _normal_scores(rng, 1000, 1000, d=1.0)
    other = 0.7 * scores + rng.normal(size=len(scores))  # a correlated second model
    boot = bootstrap_auc_samples(labels, np.column_stack([scores, other]), n_resamples=2000, seed=7)
    ratio = delong_variance(labels, scores) / boot[:, 0].var(ddof=1)
    assert 0.85 < ratio < 1.15, ratio
    ratio_difference = delong(labels, scores, other).variance / (boot[:, 0] - boot[:, 1]).var(ddof=1)
    assert 0.85 < ratio_difference < 1.15, ratio_difference


def test_identical_scores_give_no_difference():
    labels, scores = _tied_scores(3)
    result = delong(labels, scores[:, 0], scores[:, 0].copy())
    assert (result.difference, result.variance, result.z, result.p) == (0.0, 0.0, 0.0, 1.0)
    # Same ranking, different values: still identical AUC components.
    assert delong(labels, scores[:, 0], 3 * scores[:, 0] + 1).p == 1.0
    assert bootstrap_auc_difference(labels, scores[:, 0], scores[:, 0], n_resamples=50, seed=0) == (0.0, 0.0, 0.0)


def test_delong_rejects_a_missing_class():
    with pytest.raises(ValueError, match="at least 2"):
        delong([1, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])


def test_bootstrap_is_seeded_and_paired():
    labels, scores = _tied_scores(4, columns=2)
    first = bootstrap_auc_difference(labels, scores[:, 0], scores[:, 1], n_resamples=200, seed=11)
    assert first == bootstrap_auc_difference(labels, scores[:, 0], scores[:, 1], n_resamples=200, seed=11)
    assert first[1] < first[0] < first[2]
    assert first[0] == pytest.approx(auc(labels, scores[:, 0]) - auc(labels, scores[:, 1]))
    # Paired: the interval of the difference is narrower than one from independent resamples would be
    # for these positively correlated models (their AUC variances add up minus twice the covariance).
    samples = bootstrap_auc_samples(labels, scores, n_resamples=200, seed=11)
    assert np.var(samples[:, 0] - samples[:, 1]) < np.var(samples[:, 0]) + np.var(samples[:, 1])


def test_bootstrap_ci_covers_the_true_auc():
    d = 1.0
    true_auc = 0.5 * math.erfc(-d / 2)  # Phi(d / sqrt 2) = (1 + erf(d / 2)) / 2
    rng = np.random.default_rng(12345)
    covered = 0
    draws = 200
    for draw in range(draws):
        labels, scores = _normal_scores(rng, 100, 100, d)
        _, low, high = bootstrap_auc_ci(labels, scores, n_resamples=300, seed=draw)
        covered += low <= true_auc <= high
    assert 0.90 <= covered / draws <= 0.99, covered / draws


def test_holm_by_hand():
    # Sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> max(0.06, 0.04) = 0.06.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    # 0.3 x 2 = 0.6 then 0.45 x 1 -> 0.6 (monotone); 0.7 x 2 = 1.4 capped at 1, 0.9 -> 1 (monotone).
    np.testing.assert_allclose(holm([0.45, 0.3]), [0.6, 0.6], rtol=1e-12)
    np.testing.assert_allclose(holm([0.7, 0.9]), [1.0, 1.0], rtol=1e-12)
    assert holm([]).shape == (0,)

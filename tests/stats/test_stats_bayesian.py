"""Exact Bayesian A/B against the article's figures and against independent quadrature, to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest

from mlrollouts.stats import bayesian_ab, expected_loss, lift_credible_interval, prob_b_beats_a, prob_greater

SIZES = [
    (100, 1000, 120, 1000),
    (0, 0, 0, 0),
    (3, 10, 1, 12),
    (480, 5000, 520, 5000),
    (1380, 8500, 1545, 8200),
    (20000, 200000, 20300, 200000),
    (45000, 60000, 44000, 58000),
    (2000, 10000, 2600, 10000),  # P(B > A) indistinguishable from 1
    (30, 1000, 900, 50000),  # very unequal sample sizes
    (46, 199995, 46, 200000),  # rare events in huge samples: betaln of large arguments loses 1e-9 here
]


def test_article_example() -> None:
    assert round(prob_b_beats_a(100, 1000, 120, 1000), 6) == 0.923183
    loss = expected_loss(100, 1000, 120, 1000)
    assert round(loss.choose_a, 6) == 0.020445


@pytest.mark.parametrize("counts", SIZES)
def test_prob_b_beats_a_matches_quadrature(counts: tuple[int, int, int, int], reference) -> None:
    assert prob_b_beats_a(*counts) == pytest.approx(reference["prob_b_beats_a"](*counts), abs=1e-9)


@pytest.mark.parametrize("counts", SIZES)
def test_expected_loss_matches_quadrature(counts: tuple[int, int, int, int], reference) -> None:
    loss = expected_loss(*counts)
    assert loss.choose_a == pytest.approx(reference["loss_choosing_a"](*counts), abs=1e-9)
    s_a, n_a, s_b, n_b = counts
    mean_a, mean_b = (s_a + 1) / (n_a + 2), (s_b + 1) / (n_b + 2)
    assert loss.choose_a - loss.choose_b == pytest.approx(mean_b - mean_a, abs=1e-12)


@pytest.mark.parametrize("counts", SIZES)
def test_the_four_sums_agree(counts: tuple[int, int, int, int]) -> None:
    s_a, n_a, s_b, n_b = counts
    a_a, b_a, a_b, b_b = 1 + s_a, 1 + n_a - s_a, 1 + s_b, 1 + n_b - s_b
    assert prob_greater(a_b, b_b, a_a, b_a) + prob_greater(a_a, b_a, a_b, b_b) == pytest.approx(1.0, abs=1e-12)
    assert prob_greater(a_b, b_b, a_a, b_a) == pytest.approx(prob_greater(b_a, a_a, b_b, a_b), abs=1e-12)


def test_non_integer_prior_uses_quadrature(reference) -> None:
    jeffreys = (0.5, 0.5)
    assert prob_b_beats_a(40, 400, 55, 410, prior=jeffreys) == pytest.approx(
        reference["prob_b_beats_a"](40, 400, 55, 410, prior=jeffreys), abs=1e-9
    )


def test_lift_credible_interval_matches_monte_carlo_quantiles() -> None:
    rng = np.random.default_rng(3)
    draws_a = rng.beta(101, 901, 1_000_000)
    draws_b = rng.beta(121, 881, 1_000_000)
    expected = np.quantile(draws_b / draws_a - 1, [0.025, 0.975])
    low, high = lift_credible_interval(100, 1000, 120, 1000)
    assert low == pytest.approx(expected[0], abs=3e-3)
    assert high == pytest.approx(expected[1], abs=3e-3)


def test_bayesian_summary_is_consistent() -> None:
    result = bayesian_ab(1380, 8500, 1545, 8200)
    assert result.prob_b_better == prob_b_beats_a(1380, 8500, 1545, 8200)
    assert result.expected_loss_a > result.expected_loss_b
    assert 0 < result.lift_ci_low < result.lift_ci_high


def test_bad_counts_name_the_arm() -> None:
    with pytest.raises(ValueError, match="treatment"):
        prob_b_beats_a(1, 10, 11, 10)

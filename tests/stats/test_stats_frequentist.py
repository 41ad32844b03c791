"""z-test and Welch's test against statsmodels and scipy, to 1e-9."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

from mlrollouts.stats import MeanStats, effect_label, two_proportion_ztest, welch_ttest, welch_ttest_from_sums

PROPORTION_CASES = [(1380, 8500, 1545, 8200), (100, 1000, 120, 1000), (3, 40, 9, 35), (5000, 9000, 4900, 9100)]


@pytest.mark.parametrize(("s_a", "n_a", "s_b", "n_b"), PROPORTION_CASES)
def test_ztest_matches_statsmodels(s_a: int, n_a: int, s_b: int, n_b: int) -> None:
    result = two_proportion_ztest(s_a, n_a, s_b, n_b)
    z, p = proportions_ztest([s_b, s_a], [n_b, n_a])
    assert result.z == pytest.approx(z, abs=1e-9)
    assert result.p_value == pytest.approx(p, abs=1e-9)
    low, high = confint_proportions_2indep(s_b, n_b, s_a, n_a, method="wald", compare="diff")
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=1e-9)
    assert result.cohens_h == pytest.approx(proportion_effectsize(s_b / n_b, s_a / n_a), abs=1e-12)


def test_ztest_reports_lift_of_the_issue_example() -> None:
    result = two_proportion_ztest(1380, 8500, 1545, 8200)
    assert result.relative_lift == pytest.approx((1545 / 8200) / (1380 / 8500) - 1, abs=1e-12)
    assert result.relative_lift_ci_low < result.relative_lift < result.relative_lift_ci_high
    assert result.relative_lift_ci_low > 0  # the rates differ significantly, so the lift excludes 0
    assert result.effect_label == "negligible"


def test_relative_lift_interval_covers_the_true_lift_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    n, rate_a, rate_b, replicates = 4000, 0.2, 0.23, 1500
    covered = [
        r.relative_lift_ci_low <= rate_b / rate_a - 1 <= r.relative_lift_ci_high
        for r in (
            two_proportion_ztest(int(a), n, int(b), n)
            for a, b in zip(rng.binomial(n, rate_a, replicates), rng.binomial(n, rate_b, replicates), strict=True)
        )
    ]
    assert abs(np.mean(covered) - 0.95) < 3 * math.sqrt(0.95 * 0.05 / replicates)


def test_identical_extreme_rates_give_no_evidence() -> None:
    result = two_proportion_ztest(0, 500, 0, 700)
    assert (result.z, result.p_value) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("h", "label"),
    [
        (0.0, "negligible"),
        (-0.19, "negligible"),
        (0.2, "small"),
        (-0.5, "medium"),
        (0.79, "medium"),
        (0.8, "large"),
        (-2.0, "large"),
    ],
)
def test_cohens_h_labels(h: float, label: str) -> None:
    assert effect_label(h) == label


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="exceed"):
        two_proportion_ztest(5, 3, 1, 10)
    with pytest.raises(ValueError, match="non-negative"):
        two_proportion_ztest(-1, 3, 1, 10)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_matches_scipy_on_raw_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(10.0, 3.0, 40 + seed * 7)
    b = rng.normal(11.0, 5.0, 55)
    result = welch_ttest(len(a), a.mean(), a.var(ddof=1), len(b), b.mean(), b.var(ddof=1))
    reference = stats.ttest_ind(b, a, equal_var=False)
    assert result.t == pytest.approx(reference.statistic, abs=1e-9)
    assert result.p_value == pytest.approx(reference.pvalue, abs=1e-9)
    assert result.df == pytest.approx(reference.df, abs=1e-9)
    ci = reference.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    from_stats = stats.ttest_ind_from_stats(
        b.mean(), b.std(ddof=1), len(b), a.mean(), a.std(ddof=1), len(a), equal_var=False
    )
    assert result.p_value == pytest.approx(from_stats.pvalue, abs=1e-9)


def test_prometheus_sums_give_the_same_test_as_raw_data() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.gamma(2.0, 0.1, 500), rng.gamma(2.2, 0.1, 450)
    arm_a = MeanStats.from_sums(len(a), a.sum(), (a**2).sum())
    arm_b = MeanStats.from_sums(len(b), b.sum(), (b**2).sum())
    assert arm_a.mean == pytest.approx(a.mean(), rel=1e-12)
    assert arm_a.var == pytest.approx(a.var(ddof=1), rel=1e-9)
    assert welch_ttest_from_sums(arm_a, arm_b).p_value == pytest.approx(
        stats.ttest_ind(b, a, equal_var=False).pvalue, abs=1e-9
    )


def test_welch_with_constant_metrics() -> None:
    assert welch_ttest(10, 1.0, 0.0, 10, 1.0, 0.0).p_value == 1.0
    assert welch_ttest(10, 1.0, 0.0, 10, 2.0, 0.0).p_value == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        MeanStats.from_sums(1, 3.0, 9.0)

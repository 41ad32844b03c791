"""The anytime-valid SRM test: equal to scipy's Dirichlet-multinomial / multinomial ratio, and honest under peeking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from mlrollouts.stats.srm import SRM_CONCENTRATION, srm_log_bayes_factor


@pytest.mark.parametrize(
    ("counts", "weights"), [([520, 480], [50, 50]), ([9000, 1000, 40], [90, 9, 1]), ([3, 0], [1, 1])]
)
def test_log_bayes_factor_is_the_dirichlet_multinomial_over_the_multinomial(counts, weights) -> None:
    p = np.array(weights, float) / sum(weights)
    n = sum(counts)
    expected = stats.dirichlet_multinomial.logpmf(counts, SRM_CONCENTRATION * p, n) - stats.multinomial.logpmf(
        counts, n, p
    )
    assert srm_log_bayes_factor(counts, weights) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_traffic_on_a_zero_weight_arm_is_certain_and_no_traffic_is_no_evidence() -> None:
    assert srm_log_bayes_factor([10, 5], [100, 0]) == math.inf
    assert srm_log_bayes_factor([0, 0], [50, 50]) == 0.0


def _log_bf_90_10(champion: np.ndarray, challenger: np.ndarray) -> np.ndarray:
    """srm_log_bayes_factor for a 90/10 split, over arrays of looks at once."""
    c, n = SRM_CONCENTRATION, champion + challenger
    log_bf = special.gammaln(c) - special.gammaln(c + n)
    for counts, p in ((champion, 0.9), (challenger, 0.1)):
        log_bf += special.gammaln(c * p + counts) - special.gammaln(c * p) - counts * math.log(p)
    return log_bf


def test_checked_every_minute_for_14_days_the_false_alarm_rate_stays_below_the_threshold() -> None:
    """A/A at a 90/10 split, 20 trials a minute for 14 days, checked every minute (20,160 looks per run).

    Chi-square re-tested at every look alarms in a large share of runs; the sequential test keeps its 0.001.
    """
    rng = np.random.default_rng(2022)
    runs, looks, per_look, threshold = 300, 20160, 20, 0.001
    challenger = rng.binomial(per_look, 0.1, (runs, looks)).cumsum(axis=1).astype(float)
    total = per_look * np.arange(1, looks + 1, dtype=float)
    champion = total - challenger
    log_bf = _log_bf_90_10(champion, challenger)
    assert log_bf[3, 777] == pytest.approx(srm_log_bayes_factor([champion[3, 777], challenger[3, 777]], [90, 10]))
    sequential = int((log_bf.max(axis=1) >= math.log(1 / threshold)).sum())
    chi2 = (challenger - 0.1 * total) ** 2 / (0.1 * total) + (champion - 0.9 * total) ** 2 / (0.9 * total)
    chi_square = int((stats.chi2.sf(chi2.max(axis=1), 1) < threshold).sum())
    assert sequential / runs <= threshold + 3 * math.sqrt(threshold / runs)
    assert chi_square / runs > 5 * threshold


def test_a_fifth_of_one_arm_lost_is_found_quickly() -> None:
    """50/50 split, the challenger logs 80 % of its trials: flagged long before 10,000 trials."""
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(200):
        a = rng.binomial(50, 0.5, 200).cumsum()
        b = rng.binomial(rng.binomial(50, 0.5, 200), 0.8).cumsum()
        found += any(srm_log_bayes_factor([x, y], [50, 50]) >= math.log(1000) for x, y in zip(a, b, strict=True))
    assert found / 200 >= 0.95

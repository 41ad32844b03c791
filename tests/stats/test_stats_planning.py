"""Sample sizes against R's power.prop.test / power.t.test documentation and a power simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import TTestIndPower

from mlrollouts.stats import (
    plan_duration,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
    two_proportion_ztest,
)


def test_r_power_prop_test_documented_examples() -> None:
    # R ?power.prop.test: power.prop.test(n = 50, p1 = .50, p2 = .75) => power = 0.7401659
    assert power_proportions(50, 0.5, 0.75) == pytest.approx(0.7401659, abs=1e-7)
    # power.prop.test(p1 = .50, p2 = .75, power = .90) => n = 76.7
    assert power_proportions(76.7, 0.5, 0.75) == pytest.approx(0.9, abs=2e-4)
    assert sample_size_proportions(0.5, 0.25, power=0.9, relative=False) == 77


def test_article_example_needs_6868_not_8744() -> None:
    assert sample_size_proportions(0.18, -0.10) == 6868


@pytest.mark.parametrize(("baseline", "mde"), [(0.18, -0.10), (0.05, 0.2), (0.5, 0.03), (0.9, -0.02)])
def test_planned_n_is_the_smallest_with_enough_power(baseline: float, mde: float) -> None:
    n = sample_size_proportions(baseline, mde, power=0.8)
    p2 = baseline * (1 + mde)
    assert power_proportions(n, baseline, p2) >= 0.8
    assert power_proportions(n - 1, baseline, p2) < 0.8


def test_one_sided_plan_needs_less_traffic() -> None:
    assert sample_size_proportions(0.18, 0.1, two_sided=False) < sample_size_proportions(0.18, 0.1)


def test_r_power_t_test_documented_example_and_statsmodels() -> None:
    # R ?power.t.test: power.t.test(power = .90, delta = 1) => n = 22.02110
    assert sample_size_means(1.0, 1.0, power=0.9) == 23
    expected = TTestIndPower().solve_power(effect_size=0.25, power=0.8, alpha=0.05)
    assert sample_size_means(4.0, 1.0) == math.ceil(expected)


def test_duration_waits_for_the_smallest_variant() -> None:
    assert plan_duration(6868, 5000, 0.5) == pytest.approx(2.7472)
    assert plan_duration(6868, 5000, 0.1) == pytest.approx(13.736)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"baseline": 1.2, "mde": 0.1}, "baseline"),
        ({"baseline": 0.5, "mde": 0.0}, "mde"),
        ({"baseline": 0.95, "mde": 0.1}, "outside (0, 1)"),
        ({"baseline": 0.5, "mde": 0.1, "alpha": 1.5}, "alpha"),
        ({"baseline": 0.5, "mde": 0.1, "power": 0.0}, "power"),
    ],
)
def test_impossible_plans_are_refused_with_the_field_named(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        sample_size_proportions(**kwargs)


def test_fixed_horizon_power_at_the_planned_n_is_80_percent() -> None:
    rng = np.random.default_rng(20240601)
    baseline, mde, replicates = 0.18, 0.10, 2000
    n = sample_size_proportions(baseline, mde)
    s_a = rng.binomial(n, baseline, replicates)
    s_b = rng.binomial(n, baseline * (1 + mde), replicates)
    rejected = [two_proportion_ztest(int(a), n, int(b), n).p_value < 0.05 for a, b in zip(s_a, s_b, strict=True)]
    power = float(np.mean(rejected))
    assert abs(power - 0.80) < 3 * math.sqrt(0.8 * 0.2 / replicates)

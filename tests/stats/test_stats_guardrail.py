"""The ratio-guardrail test: exact on counts, valid under continuous looks, and with power where it matters."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from mlrollouts.stats.guardrail import bound_test, upper_bound


def test_no_events_is_no_evidence() -> None:
    for kind in ("max", "maxIncrease", "maxRatio"):
        test = bound_test(kind, 0.01 if kind != "maxRatio" else 1.5, 0, 0, 0, 0, alpha=0.01)
        assert (test.breach, test.possible, test.p_value) == (False, False, 1.0)


def test_one_error_among_few_requests_is_not_a_breach() -> None:
    """A normal approximation with the restricted variance puts 1 of 1000 vs 0 of 99000 at z = 9."""
    test = bound_test("maxRatio", 1.2, 1, 1000, 0, 99_000, alpha=0.01)
    assert test.possible and not test.breach and test.p_value == 1.0


@pytest.mark.parametrize(
    ("kind", "limit", "counts", "breach"),
    [
        ("max", 0.01, (20, 1000), False),  # 2 % of 1000: possible, not established
        ("max", 0.01, (60, 2000), True),  # 3 % of 2000: established
        ("maxRatio", 1.5, (90, 15_000, 3000, 1_500_000), True),  # 0.6 % vs 0.2 % at a 1 % canary
        ("maxRatio", 1.5, (25, 10_000, 2000, 1_000_000), False),  # 0.25 % vs 0.2 %: within 1.5x
        ("maxIncrease", 0.01, (60, 1000, 100, 10_000), True),  # 6 % vs 1 %
        ("maxIncrease", 0.01, (25, 1000, 100, 10_000), False),  # 2.5 % vs 1 %: possible only
    ],
)
def test_breach_is_established_only_with_enough_evidence(kind, limit, counts, breach) -> None:
    test = bound_test(kind, limit, *counts, alpha=0.01)
    assert test.breach is breach
    assert (test.p_value <= 0.01) is breach


def test_the_champion_bound_covers_and_is_wider_than_a_single_look_interval() -> None:
    for bad, total in ((0, 1000), (3, 1000), (200, 100_000), (500, 1000)):
        clopper_pearson = beta.ppf(1 - 0.01, bad + 1, total - bad)
        assert clopper_pearson <= upper_bound(bad, total, 0.01) < 1.0
    assert upper_bound(0, 0, 0.01) == 1.0


@pytest.mark.parametrize(
    ("kind", "limit", "share_c", "share_0"),
    [("max", 0.01, 0.01, 0.0), ("maxRatio", 1.5, 0.006, 0.004), ("maxIncrease", 0.01, 0.03, 0.02)],
)
def test_a_challenger_on_the_bound_is_rarely_called_a_breach_however_often_one_looks(
    kind, limit, share_c, share_0
) -> None:
    """At the null's edge, with a look after every small batch (40 looks), the breach rate stays <= alpha."""
    rng = np.random.default_rng(2026)
    runs, looks, alpha = 300, 40, 0.05
    sizes = rng.integers(20, 200, size=(runs, looks))
    bad_c = rng.binomial(sizes, share_c).cumsum(axis=1)
    bad_0 = rng.binomial(sizes * 9, share_0).cumsum(axis=1)
    totals = sizes.cumsum(axis=1)
    breaches = sum(
        any(
            bound_test(kind, limit, bad_c[r, k], totals[r, k], bad_0[r, k], 9 * totals[r, k], alpha=alpha).breach
            for k in range(looks)
        )
        for r in range(runs)
    )
    assert breaches / runs <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / runs)


def test_the_breach_is_established_exactly_when_the_lower_bound_passes_the_allowed_share() -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        n_c = int(rng.integers(1, 20_000))
        bad_c = int(rng.binomial(n_c, rng.uniform(0, 0.05)))
        n_0 = int(rng.integers(1, 200_000))
        bad_0 = int(rng.binomial(n_0, 0.01))
        for kind, limit in (("max", 0.01), ("maxRatio", 1.5), ("maxIncrease", 0.005)):
            test = bound_test(kind, limit, bad_c, n_c, bad_0, n_0, alpha=0.01)
            assert test.breach is (test.lower_bound > test.allowed), test


@pytest.mark.parametrize(("kind", "limit", "share_0"), [("max", 0.01, 0.0), ("maxRatio", 1.5, 0.002)])
def test_a_breach_twice_the_bound_is_ruled_out_no_more_often_than_one_minus_power(kind, limit, share_0) -> None:
    """Clearance is Wald's test: at the breach it must rule out, looking after every batch, it passes <= 1 - power."""
    rng = np.random.default_rng(7)
    runs, looks, power = 200, 30, 0.9
    share_c = 2 * (limit if kind == "max" else limit * share_0)
    sizes = rng.integers(50, 400, size=(runs, looks))
    bad_c = rng.binomial(sizes, share_c).cumsum(axis=1)
    bad_0 = rng.binomial(sizes * 99, share_0).cumsum(axis=1)
    totals = sizes.cumsum(axis=1)
    cleared = sum(
        any(
            bound_test(kind, limit, bad_c[r, k], totals[r, k], bad_0[r, k], 99 * totals[r, k], alpha=0.01).cleared
            for k in range(looks)
        )
        for r in range(runs)
    )
    assert cleared / runs <= (1 - power) + 3 * np.sqrt(power * (1 - power) / runs)


def test_a_share_well_within_the_bound_is_cleared_and_no_data_is_not() -> None:
    healthy = bound_test("maxRatio", 1.5, 2, 2000, 200, 100_000, alpha=0.01, power=0.95)
    assert healthy.cleared and not healthy.breach
    assert healthy.ruled_out == pytest.approx(2 * 1.5 * 200.5 / 100_001)
    assert not bound_test("maxRatio", 1.5, 0, 0, 200, 100_000, alpha=0.01).cleared
    assert not bound_test("max", 0.01, 0, 50, alpha=0.01).cleared  # 50 clean requests cannot rule out 2 %
    assert bound_test("max", 0.01, 0, 50, alpha=0.01, power=0.0).cleared  # power 0: the hold is off

"""Always-valid p-values: the mixture formula, and peeking shown to be safe (and the z-test shown not to be)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mlrollouts.stats import (
    SequentialState,
    Stratified,
    default_tau,
    harmonic_weight,
    msprt,
    msprt_pvalue,
    msprt_pvalue_means,
    two_proportion_ztest,
)

STREAMS, LOOKS, BATCH, RATE, ALPHA = 2000, 30, 200, 0.2, 0.05


def _mixture_likelihood_ratio(estimate: float, variance: float, tau: float) -> float:
    """Lambda = integral of N(est; theta, V) N(theta; 0, tau²) dtheta / N(est; 0, V), by quadrature."""
    sd = math.sqrt(variance)
    numerator, _ = integrate.quad(
        lambda theta: stats.norm.pdf(estimate, theta, sd) * stats.norm.pdf(theta, 0, tau),
        -12 * tau + estimate,
        12 * tau + estimate,
        epsabs=0,
        epsrel=1e-12,
        limit=400,
    )
    return numerator / stats.norm.pdf(estimate, 0, sd)


@pytest.mark.parametrize(("estimate", "variance", "tau"), [(0.01, 4e-5, 0.009), (0.0, 1e-4, 0.02), (-0.3, 0.01, 0.1)])
def test_pvalue_is_inverse_of_the_normal_mixture_likelihood_ratio(estimate, variance, tau) -> None:
    expected = min(1.0, 1.0 / _mixture_likelihood_ratio(estimate, variance, tau))
    assert msprt(estimate, variance, tau).p_value == pytest.approx(expected, rel=1e-9)


def test_interval_edges_are_exactly_where_the_test_rejects() -> None:
    result = msprt(0.02, 3e-5, 0.01, alpha=0.05)
    for edge in (result.ci_low, result.ci_high):
        assert msprt(0.02 - edge, 3e-5, 0.01).p_value == pytest.approx(0.05, rel=1e-9)


def test_variance_is_the_larger_of_pooled_null_and_unpooled_never_a_zero_plug_in() -> None:
    result = msprt_pvalue(1380, 8500, 1545, 8200, tau=0.01)
    pooled = (1380 + 1545 + 1) / (8500 + 8200 + 2)
    null_variance = pooled * (1 - pooled) * (1 / 8500 + 1 / 8200)
    rate_a, rate_b = 1381 / 8502, 1546 / 8202
    unpooled = rate_a * (1 - rate_a) / 8500 + rate_b * (1 - rate_b) / 8200
    assert result == msprt(1545 / 8200 - 1380 / 8500, max(null_variance, unpooled), 0.01)
    pooled_var = (99 * 4.0 + 119 * 9.0) / 218
    assert msprt_pvalue_means(100, 2.0, 4.0, 120, 2.5, 9.0, tau=0.2) == msprt(
        0.5, max(pooled_var * (1 / 100 + 1 / 120), 4 / 100 + 9 / 120), 0.2
    )


def test_an_arm_at_n_of_n_is_not_certainty() -> None:
    """The demo's 19/19 vs 267/367 gave p = 1.18e-21 with the plug-in variance (19/19 has variance 0)."""
    result = msprt_pvalue(267, 367, 19, 19, tau=default_tau(0.7, 0.05))
    assert 0.6 < result.p_value < 0.8
    assert msprt_pvalue(0, 50, 0, 50, tau=0.01).p_value == 1.0
    assert msprt_pvalue(0, 400, 3, 3, tau=0.01).p_value > 0.05


def test_default_tau_is_the_planned_absolute_effect() -> None:
    assert default_tau(0.18, -0.10) == pytest.approx(0.018)
    assert default_tau(0.18, 0.02, relative=False) == pytest.approx(0.02)
    assert msprt_pvalue(180, 1000, 200, 1000).tau == pytest.approx(0.05 * 0.18)


def test_running_state_keeps_the_minimum_and_intersects_intervals() -> None:
    state = SequentialState().update(0.3, (-0.1, 0.2)).update(0.5, (-0.05, 0.3)).update(0.04)
    assert (state.p_value, state.ci_low, state.ci_high, state.looks) == (0.04, -0.05, 0.2, 3)
    with pytest.raises(ValueError, match="p_value"):
        state.update(1.5)


def test_direction_comes_from_the_interval_and_a_conflict_restarts() -> None:
    early = SequentialState().update(1e-5, (0.01, 0.03))
    assert early.sign() == 1
    vanished = early.update(0.9, (-0.004, 0.004))  # disjoint: the effect changed, not "significantly worse"
    assert (vanished.sign(), vanished.p_value, vanished.restarts, vanished.looks) == (0, 0.9, 1, 1)
    assert SequentialState().update(0.01, (-0.03, -0.01)).sign() == -1


def test_epochs_combine_with_size_weights() -> None:
    combined = Stratified().add(0.02, 1e-4, 50.0).add(-0.01, 4e-5, 150.0)
    estimate, variance = combined.combined()
    assert estimate == pytest.approx((50 * 0.02 + 150 * -0.01) / 200)
    assert variance == pytest.approx((50**2 * 1e-4 + 150**2 * 4e-5) / 200**2)
    assert Stratified().combined() is None
    assert Stratified().add(0.1, 0.0, 10).epochs == 0  # a zero variance is no evidence
    assert harmonic_weight(100, 300) == pytest.approx(75.0)


def _aa_streams() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2017)
    s_a = rng.binomial(BATCH, RATE, (STREAMS, LOOKS)).cumsum(axis=1)
    s_b = rng.binomial(BATCH, RATE, (STREAMS, LOOKS)).cumsum(axis=1)
    return s_a, s_b, BATCH * np.arange(1, LOOKS + 1)


def test_peeking_is_safe_with_msprt_and_not_with_the_z_test() -> None:
    s_a, s_b, n = _aa_streams()
    tau = default_tau(RATE, 0.10)
    sequential_rejects = z_rejects = 0
    for stream in range(STREAMS):
        state = SequentialState()
        peeked_z_rejected = False
        for look in range(LOOKS):
            a, b = int(s_a[stream, look]), int(s_b[stream, look])
            state = state.update(msprt_pvalue(a, int(n[look]), b, int(n[look]), tau=tau).p_value)
            peeked_z_rejected |= two_proportion_ztest(a, int(n[look]), b, int(n[look])).p_value < ALPHA
        sequential_rejects += state.p_value < ALPHA
        z_rejects += peeked_z_rejected
    monte_carlo_error = math.sqrt(ALPHA * (1 - ALPHA) / STREAMS)
    assert sequential_rejects / STREAMS <= ALPHA + 3 * monte_carlo_error
    assert z_rejects / STREAMS > 0.2


def test_msprt_still_finds_a_real_effect() -> None:
    rng = np.random.default_rng(5)
    streams, n = 300, BATCH * np.arange(1, LOOKS + 1)
    s_a = rng.binomial(BATCH, 0.20, (streams, LOOKS)).cumsum(axis=1)
    s_b = rng.binomial(BATCH, 0.23, (streams, LOOKS)).cumsum(axis=1)
    tau = default_tau(0.20, 0.15)
    detected = [
        min(msprt_pvalue(int(a), int(m), int(b), int(m), tau=tau).p_value for a, b, m in zip(ra, rb, n, strict=True))
        < ALPHA
        for ra, rb in zip(s_a, s_b, strict=True)
    ]
    assert np.mean(detected) > 0.8


def test_no_data_means_no_evidence() -> None:
    assert msprt_pvalue(0, 0, 0, 0, tau=0.01).p_value == 1.0
    assert msprt_pvalue(0, 100, 0, 100, tau=0.01).p_value == 1.0

"""The spike-and-slab posterior against numerical integration, and its error bound under continuous looks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mlrollouts.stats.spike_slab import spike_slab


@pytest.mark.parametrize(("estimate", "variance", "tau", "q"), [(0.01, 4e-5, 0.009, 0.5), (-0.3, 0.01, 0.1, 0.25)])
def test_posterior_matches_numerical_integration(estimate, variance, tau, q) -> None:
    sd = math.sqrt(variance)
    likelihood = lambda theta: stats.norm.pdf(estimate, theta, sd)  # noqa: E731
    slab = lambda theta: q * stats.norm.pdf(theta, 0, tau) * likelihood(theta)  # noqa: E731
    lo, hi = estimate - 12 * sd - 12 * tau, estimate + 12 * sd + 12 * tau
    evidence_slab = integrate.quad(slab, lo, hi, epsabs=0, epsrel=1e-11, limit=400)[0]
    total = evidence_slab + (1 - q) * likelihood(0.0)
    positive = integrate.quad(slab, 0, hi, epsabs=0, epsrel=1e-11, limit=400)[0] / total
    loss_higher = integrate.quad(lambda t: -t * slab(t), lo, 0, epsabs=0, epsrel=1e-11, limit=400)[0] / total
    loss_lower = integrate.quad(lambda t: t * slab(t), 0, hi, epsabs=0, epsrel=1e-11, limit=400)[0] / total
    result = spike_slab(estimate, variance, tau, prior_differs=q)
    assert result.probability_differs == pytest.approx(evidence_slab / total, rel=1e-7)
    assert result.probability_positive == pytest.approx(positive, rel=1e-7)
    assert result.loss_if_higher_chosen == pytest.approx(loss_higher, rel=1e-6)
    assert result.loss_if_lower_chosen == pytest.approx(loss_lower, rel=1e-6)


def test_the_t_posterior_is_less_sure_with_few_degrees_of_freedom() -> None:
    normal = spike_slab(0.5, 0.04, 0.5, prior_differs=0.5)
    wide = spike_slab(0.5, 0.04, 0.5, prior_differs=0.5, df=4)
    close = spike_slab(0.5, 0.04, 0.5, prior_differs=0.5, df=10_000)
    assert wide.probability_positive < normal.probability_positive
    assert close.probability_positive == pytest.approx(normal.probability_positive, rel=1e-4)


def test_a_a_looked_at_every_step_rarely_reaches_095() -> None:
    """2,000 A/A streams, 500 looks each: P(better) >= 0.95 at some look in at most (1 - 0.95) / 0.95 of them.

    The flat-prior P(better) this replaces crosses 0.95 in most such streams."""
    rng = np.random.default_rng(7)
    streams, looks, batch, rate = 2000, 500, 100, 0.1
    a = rng.binomial(batch, rate, (streams, looks)).cumsum(axis=1)
    b = rng.binomial(batch, rate, (streams, looks)).cumsum(axis=1)
    n = batch * np.arange(1, looks + 1)
    pooled = (a + b + 1) / (2 * n + 2)
    variance = 2 * pooled * (1 - pooled) / n
    estimate = (b - a) / n
    tau2 = (0.1 * rate) ** 2
    log_bf = 0.5 * np.log(variance / (variance + tau2)) + tau2 * estimate**2 / (2 * variance * (variance + tau2))
    differs = 1 / (1 + np.exp(-log_bf))
    mean, sd = estimate * tau2 / (variance + tau2), np.sqrt(variance * tau2 / (variance + tau2))
    better = differs * stats.norm.cdf(mean / sd)
    flat = stats.norm.cdf(estimate / np.sqrt(variance))
    assert better[5, 17] == pytest.approx(
        spike_slab(float(estimate[5, 17]), float(variance[5, 17]), 0.01, prior_differs=0.5).probability_positive
    )
    assert (better >= 0.95).any(axis=1).mean() <= 0.05 / 0.95
    assert (flat >= 0.95).any(axis=1).mean() > 0.3

"""Independent references for the statistics tests: one-dimensional quadrature, not the formulas under test."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from scipy import integrate, stats


def _integrate_over(a: float, b: float, integrand: Callable[[float], float]) -> float:
    """Integrate over the bulk of Beta(a, b), split at its mean and quartiles for a concentrated density."""
    edges = stats.beta.ppf([1e-15, 0.25, 0.5, 0.75, 1.0 - 1e-15], a, b)
    return sum(
        integrate.quad(integrand, lo, hi, epsabs=1e-14, epsrel=1e-13, limit=400)[0]
        for lo, hi in itertools.pairwise(edges)
    )


def quad_prob_b_beats_a(s_a: int, n_a: int, s_b: int, n_b: int, prior=(1, 1)) -> float:
    """P(p_b > p_a) = integral of f_b(y) F_a(y) dy."""
    a_a, b_a = prior[0] + s_a, prior[1] + n_a - s_a
    a_b, b_b = prior[0] + s_b, prior[1] + n_b - s_b
    return _integrate_over(a_b, b_b, lambda y: stats.beta.pdf(y, a_b, b_b) * stats.beta.cdf(y, a_a, b_a))


def quad_loss_choosing_a(s_a: int, n_a: int, s_b: int, n_b: int) -> float:
    """E[max(p_b - p_a, 0)] = integral of f_a(x) (E[p_b; p_b > x] - x P(p_b > x)) dx."""
    a_a, b_a = 1 + s_a, 1 + n_a - s_a
    a_b, b_b = 1 + s_b, 1 + n_b - s_b
    mean_b = a_b / (a_b + b_b)
    return _integrate_over(
        a_a,
        b_a,
        lambda x: (
            stats.beta.pdf(x, a_a, b_a) * (mean_b * stats.beta.sf(x, a_b + 1, b_b) - x * stats.beta.sf(x, a_b, b_b))
        ),
    )


@pytest.fixture
def reference() -> dict[str, Callable[..., float]]:
    return {"prob_b_beats_a": quad_prob_b_beats_a, "loss_choosing_a": quad_loss_choosing_a}

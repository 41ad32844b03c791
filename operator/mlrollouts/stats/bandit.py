"""Thompson-sampling traffic allocation: send traffic in proportion to each arm's chance of being best.

Probabilities are computed, not sampled: exact for two arms (`prob_b_beats_a`), and by adaptive quadrature
of f_j(x) * prod_{k != j} F_k(x) for more, so the same counts always give the same split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from scipy import integrate, special, stats

from mlrollouts.stats.bayesian import Prior, posterior, prob_greater

Arms = Mapping[str, tuple[int, int]]


def _prob_best_integrated(params: dict[str, tuple[float, float]]) -> dict[str, float]:
    result: dict[str, float] = {}
    for name, (a, b) in params.items():
        others = [p for other, p in params.items() if other != name]
        log_norm = float(special.betaln(a, b))
        lo, hi = (float(x) for x in stats.beta.ppf([1e-15, 1.0 - 1e-15], a, b))

        def integrand(x: float, a: float = a, b: float = b, log_norm: float = log_norm, others=others) -> float:
            density = math.exp((a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x) - log_norm)
            for other_a, other_b in others:
                density *= float(special.betainc(other_a, other_b, x))
            return density

        steps = sorted(oa / (oa + ob) for oa, ob in others if lo < oa / (oa + ob) < hi)
        value, _ = integrate.quad(integrand, lo, hi, points=steps or None, epsabs=1e-12, limit=200)
        result[name] = value
    total = sum(result.values())
    return {name: value / total for name, value in result.items()}


def prob_best(arms: Arms, prior: Prior = (1.0, 1.0)) -> dict[str, float]:
    """P(arm has the highest rate) under independent Beta posteriors, for arms name -> (successes, trials)."""
    if len(arms) < 2:
        raise ValueError(f"need at least two arms, got {len(arms)}")
    params = {name: posterior(s, n, prior, name) for name, (s, n) in arms.items()}
    if len(params) == 2:
        (first, (a1, b1)), (second, (a2, b2)) = params.items()
        p_second = prob_greater(a2, b2, a1, b1)
        return {first: 1.0 - p_second, second: p_second}
    return _prob_best_integrated(params)


def largest_remainder(shares: Mapping[str, float], total: int = 100) -> dict[str, int]:
    """Round non-negative shares to integers summing to exactly `total`, never moving one by a unit or more."""
    scale = total / sum(shares.values())
    exact = {name: share * scale for name, share in shares.items()}
    rounded = {name: math.floor(value) for name, value in exact.items()}
    missing = total - sum(rounded.values())
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - rounded[name]), name))
    for name in by_remainder[:missing]:
        rounded[name] += 1
    return rounded


def thompson_allocation(
    arms: Arms,
    *,
    min_exploration: float = 0.05,
    prior: Prior = (1.0, 1.0),
    probabilities: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Integer traffic percentages (summing to 100) proportional to P(best), with a floor per arm.

    Each arm gets min_exploration plus its P(best) share of what the floors leave, so every arm keeps at
    least floor(100 * min_exploration) percent and a wrong early belief can still be corrected.
    `probabilities` are prob_best(arms, prior) when the caller already has them.
    """
    if not min_exploration >= 0.0 or len(arms) * min_exploration > 1.0:
        raise ValueError(f"min_exploration must be in [0, 1/{len(arms)}] for {len(arms)} arms, got {min_exploration}")
    probabilities = prob_best(arms, prior) if probabilities is None else probabilities
    free = 1.0 - len(arms) * min_exploration
    return largest_remainder({name: min_exploration + free * p for name, p in probabilities.items()})

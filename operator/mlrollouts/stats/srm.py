"""Sample ratio mismatch: is traffic arriving in the proportions we asked for?

A mismatch means the assignment or the logging is broken, so no comparison of the arms can be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import special, stats

SRM_ALARM_THRESHOLD = 0.001
"""p-value below which to stop trusting an experiment (the threshold GrowthBook, Eppo and Statsig use)."""


def srm_pvalue(observed_counts: Sequence[float], expected_weights: Sequence[float]) -> float:
    """Pearson chi-square p-value of the observed counts against the configured weights.

    Weights need not sum to 1 or 100. An arm with weight 0 that still received traffic is a certain
    mismatch (p = 0); an arm with weight 0 and no traffic is left out.
    """
    if len(observed_counts) != len(expected_weights):
        raise ValueError(
            f"got {len(observed_counts)} observed counts but {len(expected_weights)} weights; give one per arm"
        )
    if any(c < 0 or math.isnan(c) for c in observed_counts):
        raise ValueError(f"observed counts must be non-negative, got {list(observed_counts)}")
    if any(w < 0 or math.isnan(w) for w in expected_weights):
        raise ValueError(f"weights must be non-negative, got {list(expected_weights)}")
    if any(w == 0 and c > 0 for c, w in zip(observed_counts, expected_weights, strict=True)):
        return 0.0
    pairs = [(c, w) for c, w in zip(observed_counts, expected_weights, strict=True) if w > 0]
    total = sum(c for c, _ in pairs)
    if len(pairs) < 2 or total == 0:
        return 1.0
    weight_sum = sum(w for _, w in pairs)
    expected = [total * w / weight_sum for _, w in pairs]
    return float(stats.chisquare([c for c, _ in pairs], f_exp=expected).pvalue)


SRM_CONCENTRATION = 100.0
"""Dirichlet prior concentration of the sequential test: alpha_i = SRM_CONCENTRATION × p0_i."""


def srm_log_bayes_factor(
    observed_counts: Sequence[float], expected_weights: Sequence[float], *, concentration: float = SRM_CONCENTRATION
) -> float:
    """Log Bayes factor of a Dirichlet-multinomial alternative against the configured split (Lindon & Malek 2022).

    Under the configured split exp(log BF) is a non-negative martingale with mean 1, so by Ville's inequality
    P(it ever reaches 1 / threshold) <= threshold however often it is checked: min(1, exp(-log BF)) is an
    always-valid p-value for "traffic arrives in the proportions asked for", where the chi-square test,
    re-run every minute, false-alarms far more often than its nominal rate.
    log BF = log DirMult(x; C p0) - log Mult(x; p0); the multinomial coefficient cancels.
    """
    if len(observed_counts) != len(expected_weights):
        raise ValueError(f"got {len(observed_counts)} counts but {len(expected_weights)} weights; give one per arm")
    if any(c < 0 or math.isnan(c) for c in observed_counts) or any(w < 0 or math.isnan(w) for w in expected_weights):
        raise ValueError("counts and weights must be non-negative numbers")
    if not concentration > 0:
        raise ValueError(f"concentration must be positive, got {concentration}")
    if any(w == 0 and c > 0 for c, w in zip(observed_counts, expected_weights, strict=True)):
        return math.inf
    pairs = [(c, w) for c, w in zip(observed_counts, expected_weights, strict=True) if w > 0]
    total_weight = sum(w for _, w in pairs)
    n = sum(c for c, _ in pairs)
    if len(pairs) < 2 or n == 0:
        return 0.0
    log_bf = float(special.gammaln(concentration) - special.gammaln(concentration + n))
    for count, weight in pairs:
        p = weight / total_weight
        alpha = concentration * p
        log_bf += float(special.gammaln(alpha + count) - special.gammaln(alpha)) - count * math.log(p)
    return log_bf

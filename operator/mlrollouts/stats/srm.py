"""Sample ratio mismatch: is traffic arriving in the proportions we asked for?

A mismatch means the assignment or the logging is broken, so no comparison of the arms can be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

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

"""A difference between two arms and a variance that never claims certainty it does not have.

Each function returns (estimate, variance) of treatment (b) minus control (a). The variance feeds the
mSPRT, whose p-value is only as honest as that variance: a plug-in variance of zero (an arm at 0/n or n/n,
or a mean metric whose few observations happen to be equal) would make any difference look certain. So:

- proportions: the larger of the variance under the pooled null, p(1 - p)(1/n_a + 1/n_b), and the unpooled
  variance, both from rates smoothed by one success and one failure ((s + 1) / (n + 2), Agresti-Caffo), so
  neither can be zero. 19/19 vs 267/367 gives V = 0.0106, not 0.00054.
- means: the larger of the pooled within-arm variance and Welch's unpooled variance.
- ratios (events per user, Deng et al.'s delta method): the unit is the user; per-variant sums over users
  of x, y, x², y² and xy give Var(R) = (s_y² - 2 R s_xy + R² s_x²) / (n x̄²), so a user with many events
  counts as one correlated unit, not as many independent ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlrollouts.stats.frequentist import MeanStats


def _smoothed(successes: float, trials: float) -> float:
    return (successes + 1.0) / (trials + 2.0)


def proportion_difference(s_a: float, n_a: float, s_b: float, n_b: float) -> tuple[float, float]:
    """Rate of b minus rate of a, with the never-zero variance above; needs n_a, n_b > 0."""
    if n_a <= 0 or n_b <= 0:
        raise ValueError(f"both arms need trials, got {n_a} and {n_b}")
    pooled = _smoothed(s_a + s_b, n_a + n_b)
    null_variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    p_a, p_b = _smoothed(s_a, n_a), _smoothed(s_b, n_b)
    unpooled = p_a * (1.0 - p_a) / n_a + p_b * (1.0 - p_b) / n_b
    return s_b / n_b - s_a / n_a, max(null_variance, unpooled)


def mean_difference(a: MeanStats, b: MeanStats) -> tuple[float, float]:
    """Mean of b minus mean of a (MeanStats needs n >= 2 per arm)."""
    pooled = ((a.n - 1) * a.var + (b.n - 1) * b.var) / (a.n + b.n - 2)
    return b.mean - a.mean, max(pooled * (1.0 / a.n + 1.0 / b.n), a.var / a.n + b.var / b.n)


@dataclass(frozen=True)
class RatioMoments:
    """One arm of a ratio metric, summed over users: n users, Σx, Σy, Σx², Σy², Σxy (y per x, e.g. clicks/views)."""

    n: float
    x: float
    y: float
    xx: float
    yy: float
    xy: float

    @property
    def ratio(self) -> float:
        return self.y / self.x if self.x > 0 else 0.0

    def variance_of_ratio(self) -> float:
        """Delta-method variance of Σy/Σx with the user as the unit."""
        if self.n < 2 or self.x <= 0:
            return math.inf
        n, mean_x = self.n, self.x / self.n
        var_x = max(0.0, (self.xx - self.x * self.x / n) / (n - 1))
        var_y = max(0.0, (self.yy - self.y * self.y / n) / (n - 1))
        cov = (self.xy - self.x * self.y / n) / (n - 1)
        r = self.ratio
        return max(0.0, var_y - 2.0 * r * cov + r * r * var_x) / (n * mean_x * mean_x)


def ratio_difference(a: RatioMoments, b: RatioMoments) -> tuple[float, float]:
    """Ratio of b minus ratio of a; the variance never falls below the pooled-null variance of the two arms."""
    if a.n < 2 or b.n < 2:
        raise ValueError(f"each arm needs at least 2 users, got {a.n} and {b.n}")
    pooled = RatioMoments(*(getattr(a, f) + getattr(b, f) for f in ("n", "x", "y", "xx", "yy", "xy")))
    per_user = pooled.variance_of_ratio() * pooled.n  # Var(R) scaled back to one user
    null_variance = per_user * (1.0 / a.n + 1.0 / b.n)
    return b.ratio - a.ratio, max(null_variance, a.variance_of_ratio() + b.variance_of_ratio())

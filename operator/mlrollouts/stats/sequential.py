"""Always-valid inference: p-values and intervals that stay honest however often you look.

The mixture sequential probability ratio test of Johari, Pekelis and Walsh (2017, "Always valid inference",
arXiv:1512.04922), normal mixture with prior N(0, tau²) on the difference theta = b - a. With the estimate
theta_hat and its variance V (see `differences`: never a zero plug-in variance) the mixture likelihood ratio is

    Lambda = sqrt(V / (V + tau²)) * exp(tau² theta_hat² / (2 V (V + tau²)))

and p = min(1, 1 / Lambda) at this look. The running minimum over looks (`SequentialState`) is the
always-valid p-value; the matching (1 - alpha) interval is theta_hat ± sqrt(V (V + tau²) / tau² *
(2 log(1 / alpha) + log((V + tau²) / V))), and the running intersection of those intervals stays valid.

Default tau (the documented rule): tau = the planned minimum detectable effect as an absolute difference,
`default_tau(baseline, mde)`. It makes the test most powerful around the effect the experiment was sized
for. When no plan is given, tau falls back to DEFAULT_RELATIVE_MDE (5 %) of the control's observed level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mlrollouts.stats.differences import mean_difference, proportion_difference
from mlrollouts.stats.frequentist import MeanStats

DEFAULT_RELATIVE_MDE = 0.05


def default_tau(baseline: float, mde: float, *, relative: bool = True) -> float:
    """Mixture scale tau from the planned minimum detectable effect: |absolute MDE|."""
    tau = abs(baseline * mde) if relative else abs(mde)
    if not tau > 0:
        raise ValueError(f"the planned effect must be non-zero to set tau, got baseline={baseline}, mde={mde}")
    return tau


@dataclass(frozen=True)
class SequentialResult:
    """One look: the always-valid p-value and interval at this look (take running min / intersection)."""

    estimate: float
    p_value: float
    ci_low: float
    ci_high: float
    tau: float


def msprt(estimate: float, variance: float, tau: float, *, alpha: float = 0.05) -> SequentialResult:
    """The mSPRT for a difference with asymptotically normal estimate; the primitive both tests share."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if not variance > 0:  # no variability observed: nothing can be concluded yet
        return SequentialResult(estimate, 1.0, -math.inf, math.inf, tau)
    tau2 = tau * tau
    shrink = variance + tau2
    log_lambda = 0.5 * math.log(variance / shrink) + tau2 * estimate * estimate / (2.0 * variance * shrink)
    p_value = math.exp(-log_lambda) if log_lambda > 0 else 1.0
    half = math.sqrt(variance * shrink / tau2 * (2.0 * math.log(1.0 / alpha) + math.log(shrink / variance)))
    return SequentialResult(estimate, min(1.0, p_value), estimate - half, estimate + half, tau)


def msprt_pvalue(
    s_a: int, n_a: int, s_b: int, n_b: int, *, tau: float | None = None, alpha: float = 0.05
) -> SequentialResult:
    """Always-valid p-value and CI for the difference in conversion rates (treatment b minus control a)."""
    for arm, s, n in (("control", s_a, n_a), ("treatment", s_b, n_b)):
        if n < 0 or s < 0 or s > n:
            raise ValueError(f"{arm}: need 0 <= successes <= trials, got {s}/{n}")
    if n_a == 0 or n_b == 0:
        return SequentialResult(0.0, 1.0, -math.inf, math.inf, tau or math.nan)
    rate_a = s_a / n_a
    estimate, variance = proportion_difference(s_a, n_a, s_b, n_b)
    if tau is None:
        level = rate_a if rate_a > 0 else (s_a + s_b) / (n_a + n_b)
        tau = DEFAULT_RELATIVE_MDE * level if level > 0 else DEFAULT_RELATIVE_MDE
    return msprt(estimate, variance, tau, alpha=alpha)


def msprt_pvalue_means(
    n_a: int,
    mean_a: float,
    var_a: float,
    n_b: int,
    mean_b: float,
    var_b: float,
    *,
    tau: float | None = None,
    alpha: float = 0.05,
) -> SequentialResult:
    """Always-valid p-value and CI for the difference in means (treatment b minus control a)."""
    if n_a < 2 or n_b < 2:
        return SequentialResult(mean_b - mean_a, 1.0, -math.inf, math.inf, tau or math.nan)
    if var_a < 0 or var_b < 0:
        raise ValueError(f"variances must be non-negative, got {var_a} and {var_b}")
    if tau is None:
        scale = abs(mean_a) if mean_a != 0 else math.sqrt((var_a + var_b) / 2.0)
        tau = DEFAULT_RELATIVE_MDE * scale if scale > 0 else DEFAULT_RELATIVE_MDE
    estimate, variance = mean_difference(MeanStats(n_a, mean_a, var_a), MeanStats(n_b, mean_b, var_b))
    return msprt(estimate, variance, tau, alpha=alpha)


@dataclass(frozen=True)
class SequentialState:
    """What the caller carries between looks: the running minimum p and the running interval intersection.

    The verdict's direction comes from the intersected interval (the confidence sequence), never from the
    current estimate: "worse" needs the whole interval below zero, "better" above it, so a small p from an
    early look never lends its significance to the opposite sign. An empty intersection cannot happen while
    the effect is constant (except with probability alpha): it means the effect changed (a novelty effect
    that faded), so the state restarts from this look (`restarts` counts it; each restart is a fresh test at
    level alpha, so the worst case after r restarts is (r + 1) alpha, documented in docs/statistics.md). The
    engine also drops the data before the restart, which estimated the old effect.
    """

    p_value: float = 1.0
    ci_low: float = -math.inf
    ci_high: float = math.inf
    looks: int = 0
    restarts: int = 0

    def update(self, p_value: float, ci: tuple[float, float] | None = None) -> SequentialState:
        """The state after one more look; p-values only go down, intervals only shrink (or restart)."""
        if not 0.0 <= p_value <= 1.0:
            raise ValueError(f"p_value must be in [0, 1], got {p_value}")
        low, high = ci if ci is not None else (-math.inf, math.inf)
        if max(self.ci_low, low) > min(self.ci_high, high):
            return SequentialState(p_value, low, high, 1, self.restarts + 1)
        return replace(
            self,
            p_value=min(self.p_value, p_value),
            ci_low=max(self.ci_low, low),
            ci_high=min(self.ci_high, high),
            looks=self.looks + 1,
        )

    def sign(self) -> int:
        """+1 when the interval is above zero, -1 when below, 0 while it contains zero."""
        return 1 if self.ci_low > 0 else -1 if self.ci_high < 0 else 0


@dataclass(frozen=True)
class Stratified:
    """Per-epoch differences combined with fixed weights w = n_a n_b / (n_a + n_b) (Cochran-Mantel-Haenszel).

    One epoch is a period of constant allocation. Comparing within epochs and combining means a base rate
    that drifts while the weights change cannot masquerade as a treatment effect (Simpson's paradox of
    pooled counts). The weights depend on sample sizes only, not on outcomes, so the combination is unbiased;
    estimate = sum(w d) / sum(w), variance = sum(w² V) / sum(w)², which is sigma² / sum(w) when every epoch
    shares one variance sigma².
    """

    weight: float = 0.0
    weighted_estimate: float = 0.0
    weighted_variance: float = 0.0
    epochs: int = 0

    def add(self, estimate: float, variance: float, weight: float) -> Stratified:
        if not (weight > 0 and variance > 0 and math.isfinite(estimate)):
            return self
        return Stratified(
            self.weight + weight,
            self.weighted_estimate + weight * estimate,
            self.weighted_variance + weight * weight * variance,
            self.epochs + 1,
        )

    def combined(self) -> tuple[float, float] | None:
        """(estimate, variance) of the combination, None before any usable epoch."""
        if self.weight <= 0:
            return None
        return self.weighted_estimate / self.weight, self.weighted_variance / (self.weight * self.weight)


def harmonic_weight(n_a: float, n_b: float) -> float:
    """The epoch weight: n_a n_b / (n_a + n_b), proportional to the precision of a difference."""
    return n_a * n_b / (n_a + n_b) if n_a > 0 and n_b > 0 else 0.0

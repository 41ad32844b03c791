"""Always-valid inference: p-values and intervals that stay honest however often you look.

The mixture sequential probability ratio test of Johari, Pekelis and Walsh (2017, "Always valid inference",
arXiv:1512.04922), normal mixture with prior N(0, tau²) on the difference theta = b - a. With the estimate
theta_hat and its variance V (unpooled: var_a/n_a + var_b/n_b) the mixture likelihood ratio is

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
    rate_a, rate_b = s_a / n_a, s_b / n_b
    variance = rate_a * (1.0 - rate_a) / n_a + rate_b * (1.0 - rate_b) / n_b
    if variance == 0:  # e.g. 0/n vs k/k: fall back to the pooled variance rather than claim certainty
        pooled = (s_a + s_b) / (n_a + n_b)
        variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    if tau is None:
        level = rate_a if rate_a > 0 else (s_a + s_b) / (n_a + n_b)
        tau = DEFAULT_RELATIVE_MDE * level if level > 0 else DEFAULT_RELATIVE_MDE
    return msprt(rate_b - rate_a, variance, tau, alpha=alpha)


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
    return msprt(mean_b - mean_a, var_a / n_a + var_b / n_b, tau, alpha=alpha)


@dataclass(frozen=True)
class SequentialState:
    """What the caller carries between looks: running minimum p-value and intersected interval."""

    p_value: float = 1.0
    ci_low: float = -math.inf
    ci_high: float = math.inf
    looks: int = 0

    def update(self, p_value: float, ci: tuple[float, float] | None = None) -> SequentialState:
        """The state after one more look; p-values only go down, intervals only shrink."""
        if not 0.0 <= p_value <= 1.0:
            raise ValueError(f"p_value must be in [0, 1], got {p_value}")
        low, high = ci if ci is not None else (-math.inf, math.inf)
        return replace(
            self,
            p_value=min(self.p_value, p_value),
            ci_low=max(self.ci_low, low),
            ci_high=min(self.ci_high, high),
            looks=self.looks + 1,
        )

"""Sample-size and duration planning: how much traffic an experiment needs before it can decide.

The proportion formula is R's `power.prop.test` (strict=FALSE) solved in closed form: pooled variance under
H0, unpooled under H1. The means formula is R's `power.t.test` (two-sample, noncentral t) solved numerically.
"""

from __future__ import annotations

import math

from scipy import optimize, special, stats


def _check_probability(name: str, value: float) -> None:
    if not 0.0 < value < 1.0 or math.isnan(value):
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def treatment_rate(baseline: float, mde: float, *, relative: bool = True) -> float:
    """The conversion rate the treatment would have if the minimum detectable effect were real."""
    _check_probability("baseline", baseline)
    if mde == 0 or math.isnan(mde):
        raise ValueError("mde must be non-zero: an effect of 0 needs infinite traffic to detect")
    target = baseline * (1.0 + mde) if relative else baseline + mde
    if not 0.0 < target < 1.0:
        kind = "relative" if relative else "absolute"
        raise ValueError(f"baseline {baseline} with {kind} mde {mde} gives rate {target:.6g}, outside (0, 1)")
    return target


def sample_size_proportions(
    baseline: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    relative: bool = True,
    two_sided: bool = True,
) -> int:
    """Per-variant sample size for a two-proportion z-test, equal to ceil(R `power.prop.test`).

    `mde` is relative to the baseline by default (-0.10 means "a 10 % drop"); pass relative=False for
    an absolute difference in rates.
    """
    _check_probability("alpha", alpha)
    _check_probability("power", power)
    p1 = baseline
    p2 = treatment_rate(baseline, mde, relative=relative)
    z_alpha = special.ndtri(1.0 - (alpha / 2.0 if two_sided else alpha))
    z_power = special.ndtri(power)
    pooled_sd = math.sqrt((p1 + p2) * (2.0 - p1 - p2) / 2.0)
    unpooled_sd = math.sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2))
    n = ((z_alpha * pooled_sd + z_power * unpooled_sd) / abs(p2 - p1)) ** 2
    return math.ceil(n - 1e-9)


def _t_test_power(n: float, effect: float, alpha_tail: float) -> float:
    df = 2.0 * (n - 1.0)
    critical = stats.t.isf(alpha_tail, df)
    return float(stats.nct.sf(critical, df, math.sqrt(n / 2.0) * effect))


def sample_size_means(
    std: float,
    mde_abs: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    two_sided: bool = True,
) -> int:
    """Per-variant sample size for a two-sample t-test, equal to ceil(R `power.t.test`, strict=FALSE)."""
    _check_probability("alpha", alpha)
    _check_probability("power", power)
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    if mde_abs == 0 or math.isnan(mde_abs):
        raise ValueError("mde_abs must be non-zero")
    effect = abs(mde_abs) / std
    alpha_tail = alpha / 2.0 if two_sided else alpha
    upper = 4.0
    while _t_test_power(upper, effect, alpha_tail) < power:
        upper *= 2.0
        if upper > 1e12:
            raise ValueError(f"mde_abs {mde_abs} is too small relative to std {std} to plan for")
    n = optimize.brentq(lambda m: _t_test_power(m, effect, alpha_tail) - power, 2.0, upper, xtol=1e-10)
    return math.ceil(n - 1e-9)


def plan_duration(per_variant: int, daily_traffic: float, traffic_fraction: float) -> float:
    """Days until the variant receiving `traffic_fraction` of `daily_traffic` reaches `per_variant` samples.

    Pass the fraction of the smallest variant (0.5 for a 50/50 test, 0.1 for a 10 % canary step): that
    variant is the one the experiment waits for.
    """
    if per_variant < 0:
        raise ValueError(f"per_variant must be non-negative, got {per_variant}")
    if not daily_traffic > 0:
        raise ValueError(f"daily_traffic must be positive, got {daily_traffic}")
    if not 0.0 < traffic_fraction <= 1.0:
        raise ValueError(f"traffic_fraction must be in (0, 1], got {traffic_fraction}")
    return per_variant / (daily_traffic * traffic_fraction)


def power_proportions(n: float, p1: float, p2: float, *, alpha: float = 0.05, two_sided: bool = True) -> float:
    """Power of the two-proportion test with `n` per variant: R `power.prop.test`'s equation (strict=FALSE)."""
    _check_probability("p1", p1)
    _check_probability("p2", p2)
    _check_probability("alpha", alpha)
    z_alpha = special.ndtri(1.0 - (alpha / 2.0 if two_sided else alpha))
    pooled_sd = math.sqrt((p1 + p2) * (2.0 - p1 - p2) / 2.0)
    unpooled_sd = math.sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2))
    return float(special.ndtr((math.sqrt(n) * abs(p1 - p2) - z_alpha * pooled_sd) / unpooled_sd))


def sequential_sample_size(
    unit_variance: float, difference: float, *, tau: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Per-variant n at which one look of the mSPRT rejects with probability `power`.

    An always-valid test pays for its freedom to look: at the same n it is less powerful than a fixed test.
    At n per arm the estimate has variance V = unit_variance * 2 / n and the look rejects when
    |estimate| >= sqrt(2 V (V + tau²) / tau² * (log(1/alpha) + log((V + tau²) / V) / 2)); the power of that
    single look is a lower bound (earlier looks can only add rejections), so the plan is conservative.
    """
    _check_probability("alpha", alpha)
    _check_probability("power", power)
    if not (unit_variance > 0 and difference != 0 and tau > 0):
        raise ValueError("need a positive variance, a non-zero difference and a positive tau")
    effect, tau2 = abs(difference), tau * tau

    def shortfall(n: float) -> float:
        v = 2.0 * unit_variance / n
        critical = math.sqrt(2.0 * v * (v + tau2) / tau2 * (math.log(1.0 / alpha) + 0.5 * math.log((v + tau2) / v)))
        return float(special.ndtr((effect - critical) / math.sqrt(v))) - power

    high = 2.0
    while shortfall(high) < 0:
        high *= 2.0
        if high > 1e13:
            raise ValueError("the planned effect is too small to detect with any sample size")
    return math.ceil(optimize.brentq(shortfall, high / 2 if high > 2 else 1.0, high, xtol=0.5))

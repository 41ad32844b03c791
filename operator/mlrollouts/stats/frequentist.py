"""Fixed-horizon tests: the two-proportion z-test and Welch's t-test, with effect sizes people can read.

Valid only when looked at once, at the planned sample size; for repeated looks use `sequential`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special, stats

COHENS_H_LABELS = ((0.2, "negligible"), (0.5, "small"), (0.8, "medium"))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")


def check_counts(successes: int, trials: int, arm: str) -> None:
    """Reject counts that cannot come from a real experiment, naming the arm."""
    if trials < 0 or successes < 0:
        raise ValueError(f"{arm}: counts must be non-negative, got {successes}/{trials}")
    if successes > trials:
        raise ValueError(f"{arm}: successes {successes} exceed trials {trials}")


def effect_label(cohens_h: float) -> str:
    """Cohen's conventional name for the size of an effect (0.2 small, 0.5 medium, 0.8 large)."""
    size = abs(cohens_h)
    for bound, label in COHENS_H_LABELS:
        if size < bound:
            return label
    return "large"


def _relative_lift(mean_a: float, var_mean_a: float, mean_b: float, var_mean_b: float, z: float):
    """Lift b/a - 1 and its delta-method CI (var of a ratio ~ r² (var_b/b² + var_a/a²))."""
    if mean_a == 0:
        return math.nan, math.nan, math.nan
    ratio = mean_b / mean_a
    var_ratio = var_mean_b / mean_a**2 + mean_b**2 * var_mean_a / mean_a**4
    half = z * math.sqrt(var_ratio)
    return ratio - 1.0, ratio - 1.0 - half, ratio - 1.0 + half


@dataclass(frozen=True)
class ZTestResult:
    """Treatment (b) minus control (a): difference in rates, its CI, lift and effect size."""

    rate_a: float
    rate_b: float
    difference: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    relative_lift: float
    relative_lift_ci_low: float
    relative_lift_ci_high: float
    cohens_h: float
    effect_label: str


def two_proportion_ztest(s_a: int, n_a: int, s_b: int, n_b: int, *, alpha: float = 0.05) -> ZTestResult:
    """Two-sided z-test of b vs a: pooled SE for the p-value (as statsmodels), unpooled Wald CI."""
    check_counts(s_a, n_a, "control")
    check_counts(s_b, n_b, "treatment")
    _check_alpha(alpha)
    if n_a == 0 or n_b == 0:
        raise ValueError("both arms need at least one trial")
    rate_a, rate_b = s_a / n_a, s_b / n_b
    difference = rate_b - rate_a
    pooled = (s_a + s_b) / (n_a + n_b)
    pooled_se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    if pooled_se == 0:  # every trial failed, or every one succeeded, in both arms: no evidence either way
        z, p_value = 0.0, 1.0
    else:
        z = difference / pooled_se
        p_value = float(2.0 * special.ndtr(-abs(z)))
    var_a, var_b = rate_a * (1.0 - rate_a) / n_a, rate_b * (1.0 - rate_b) / n_b
    z_crit = float(special.ndtri(1.0 - alpha / 2.0))
    half = z_crit * math.sqrt(var_a + var_b)
    lift, lift_low, lift_high = _relative_lift(rate_a, var_a, rate_b, var_b, z_crit)
    cohens_h = 2.0 * math.asin(math.sqrt(rate_b)) - 2.0 * math.asin(math.sqrt(rate_a))
    return ZTestResult(
        rate_a=rate_a,
        rate_b=rate_b,
        difference=difference,
        z=z,
        p_value=p_value,
        ci_low=difference - half,
        ci_high=difference + half,
        relative_lift=lift,
        relative_lift_ci_low=lift_low,
        relative_lift_ci_high=lift_high,
        cohens_h=cohens_h,
        effect_label=effect_label(cohens_h),
    )


@dataclass(frozen=True)
class MeanStats:
    """Count, mean and sample variance (ddof=1) of one arm's metric."""

    n: int
    mean: float
    var: float

    @classmethod
    def from_sums(cls, count: float, total: float, sum_squares: float) -> MeanStats:
        """From Prometheus-style sufficient statistics (count, sum, sum of squares)."""
        if count < 2:
            raise ValueError(f"need at least 2 observations for a variance, got count={count}")
        if sum_squares < 0:
            raise ValueError(f"sum of squares must be non-negative, got {sum_squares}")
        mean = total / count
        var = max(0.0, (sum_squares - count * mean * mean) / (count - 1))
        return cls(n=round(count), mean=mean, var=var)


@dataclass(frozen=True)
class WelchResult:
    """Treatment (b) minus control (a) means: Welch's t, its CI, lift and Cohen's d."""

    mean_a: float
    mean_b: float
    difference: float
    t: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float
    relative_lift: float
    relative_lift_ci_low: float
    relative_lift_ci_high: float
    cohens_d: float
    effect_label: str


def welch_ttest(
    n_a: int, mean_a: float, var_a: float, n_b: int, mean_b: float, var_b: float, *, alpha: float = 0.05
) -> WelchResult:
    """Two-sided Welch t-test of b vs a; equals scipy `ttest_ind_from_stats(equal_var=False)`."""
    _check_alpha(alpha)
    if n_a < 2 or n_b < 2:
        raise ValueError(f"both arms need at least 2 observations, got n_a={n_a}, n_b={n_b}")
    if var_a < 0 or var_b < 0:
        raise ValueError(f"variances must be non-negative, got {var_a} and {var_b}")
    se_a2, se_b2 = var_a / n_a, var_b / n_b
    difference = mean_b - mean_a
    se = math.sqrt(se_a2 + se_b2)
    if se == 0:
        df = float(n_a + n_b - 2)
        t = 0.0 if difference == 0 else math.copysign(math.inf, difference)
        p_value = 1.0 if difference == 0 else 0.0
    else:
        df = (se_a2 + se_b2) ** 2 / (se_a2**2 / (n_a - 1) + se_b2**2 / (n_b - 1))
        t = difference / se
        p_value = float(2.0 * stats.t.sf(abs(t), df))
    t_crit = float(stats.t.isf(alpha / 2.0, df))
    lift, lift_low, lift_high = _relative_lift(mean_a, se_a2, mean_b, se_b2, t_crit)
    pooled_sd = math.sqrt((var_a + var_b) / 2.0)
    cohens_d = difference / pooled_sd if pooled_sd > 0 else 0.0
    return WelchResult(
        mean_a=mean_a,
        mean_b=mean_b,
        difference=difference,
        t=t,
        df=df,
        p_value=p_value,
        ci_low=difference - t_crit * se,
        ci_high=difference + t_crit * se,
        relative_lift=lift,
        relative_lift_ci_low=lift_low,
        relative_lift_ci_high=lift_high,
        cohens_d=cohens_d,
        effect_label=effect_label(cohens_d),
    )


def welch_ttest_from_sums(a: MeanStats, b: MeanStats, *, alpha: float = 0.05) -> WelchResult:
    """Welch's test on two arms given as `MeanStats` (e.g. built with `MeanStats.from_sums`)."""
    return welch_ttest(a.n, a.mean, a.var, b.n, b.mean, b.var, alpha=alpha)

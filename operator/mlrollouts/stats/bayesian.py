"""Bayesian A/B for proportions with Beta posteriors: exact, with no Monte Carlo.

P(p_b > p_a) is Evan Miller's closed form. Its terms are the probabilities of a beta-negative-binomial
variable, so the answer is that distribution's CDF; the terms rise to one mode and fall after it. We:
- pick, of four equivalent sums (by symmetry and by p -> 1 - p), the one over the smallest parameter;
- anchor at the mode with `betaln` and walk outwards with the exact term ratio in log space
  (t[i+1] / t[i] = (ay + i)(bx + i) / ((i + 1)(ay + by + bx + i))), vectorised with numpy;
- only evaluate terms within K standard deviations of the mode, growing K until the terms left out are
  provably below 1e-13 in total (they are each below the window's edge term, which bounds them).
This is thousands of times less work than the full sum for posteriors with tens of thousands of
successes. It is exact up to the rounding of the anchor: log-Gamma pieces of size ~1e6 at 2e5 trials
leave ~1e-9 absolute (measured worst 5e-10 for two identical arms of 196,708 trials), ~1e-14 below 1e4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, special, stats

Prior = tuple[float, float]
TRUNCATION_TOLERANCE = 1e-13
_INITIAL_WIDTH_SDS = 8.0


_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def _stirling_correction(z: float) -> float:
    """log Gamma(z) minus Stirling's leading terms; small for all z > 0 and accurate to ~1e-16."""
    if z < 20.0:
        return float(special.gammaln(z)) - ((z - 0.5) * math.log(z) - z + _HALF_LOG_TWO_PI)
    inverse, inverse_sq = 1.0 / z, 1.0 / (z * z)
    return inverse * (1 / 12 - inverse_sq * (1 / 360 - inverse_sq * (1 / 1260 - inverse_sq / 1680)))


def _log_gamma_ratio(x: float, h: float) -> float:
    """log Gamma(x + h) - log Gamma(x) without forming either: for x ~ 1e5 each is ~1e6 and their
    difference would lose ~1e-10 to rounding, which `betaln` of large arguments does."""
    return (
        (x - 0.5) * math.log1p(h / x) + h * math.log(x + h) - h + _stirling_correction(x + h) - _stirling_correction(x)
    )


def _log_term(i: int, bx: float, ay: float, by: float) -> float:
    """log of t[i] = B(ay + i, by + bx) / ((bx + i) B(1 + i, bx) B(ay, by)), as ratios of nearby Gammas."""
    return (
        _log_gamma_ratio(ay, i)
        + _log_gamma_ratio(bx, 1.0 + i)
        - _log_gamma_ratio(by + bx, ay + i)
        + _log_gamma_ratio(by, ay)
        - float(special.gammaln(1.0 + i))
        - math.log(bx + i)
    )


def _log_ratios(start: int, stop: int, ax: float, bx: float, ay: float, by: float) -> np.ndarray:
    """log(t[i+1] / t[i]) for i in [start, stop), via log1p of an exactly computed small difference."""
    i = np.arange(start, stop, dtype=np.float64)
    c = ay + by + bx
    return np.log1p((ay * bx - c - i * (by + 1.0)) / ((i + 1.0) * (c + i)))


def _series_x_beats_y(ax: float, bx: float, ay: float, by: float) -> float:
    """P(X > Y) for X ~ Beta(ax, bx), Y ~ Beta(ay, by), ax a positive integer (Miller's sum)."""
    top = int(ax) - 1
    c = ay + by + bx
    mode = min(max(math.ceil((ay * bx - c) / (by + 1.0)), 0), top)
    if by > 2.0:  # standard deviation of the beta-negative-binomial(r=bx, alpha=by, beta=ay)
        sd = math.sqrt(bx * ay * (bx + by - 1.0) * (ay + by - 1.0) / ((by - 2.0) * (by - 1.0) ** 2))
    else:
        sd = math.inf
    log_anchor = _log_term(mode, bx, ay, by)
    width = _INITIAL_WIDTH_SDS
    while True:
        lo = max(0, math.floor(mode - width * sd)) if math.isfinite(sd) else 0
        hi = min(top, math.ceil(mode + width * sd)) if math.isfinite(sd) else top
        right = log_anchor + np.cumsum(_log_ratios(mode, hi, ax, bx, ay, by))
        left = log_anchor - np.cumsum(_log_ratios(lo, mode, ax, bx, ay, by)[::-1])
        left_bound = lo * math.exp(left[-1]) if lo > 0 else 0.0
        right_bound = (top - hi) * math.exp(right[-1]) if hi < top else 0.0
        if left_bound + right_bound < TRUNCATION_TOLERANCE or (lo == 0 and hi == top):
            total = math.exp(log_anchor) + float(np.exp(right).sum()) + float(np.exp(left).sum())
            return min(1.0, max(0.0, total))
        width *= 1.5


def _integrate_x_beats_y(ax: float, bx: float, ay: float, by: float) -> float:
    """P(X > Y) by adaptive quadrature, for priors that leave no integer parameter to sum over."""
    lo, hi = stats.beta.ppf([1e-15, 1.0 - 1e-15], ay, by)
    step = ax / (ax + bx)
    points = [step] if lo < step < hi else None
    value, _ = integrate.quad(
        lambda y: stats.beta.pdf(y, ay, by) * special.betaincc(ax, bx, y),
        lo,
        hi,
        points=points,
        epsabs=1e-13,
        epsrel=1e-12,
        limit=200,
    )
    return min(1.0, max(0.0, value))


def prob_greater(ax: float, bx: float, ay: float, by: float) -> float:
    """P(X > Y) for independent X ~ Beta(ax, bx) and Y ~ Beta(ay, by), exact where a sum exists."""
    candidates = (
        (ax, lambda: _series_x_beats_y(ax, bx, ay, by)),
        (ay, lambda: 1.0 - _series_x_beats_y(ay, by, ax, bx)),
        (by, lambda: _series_x_beats_y(by, ay, bx, ax)),
        (bx, lambda: 1.0 - _series_x_beats_y(bx, ax, by, ay)),
    )
    integer = [(size, compute) for size, compute in candidates if float(size).is_integer()]
    if not integer:
        return _integrate_x_beats_y(ax, bx, ay, by)
    _, compute = min(integer, key=lambda candidate: candidate[0])
    return compute()


def posterior(successes: int, trials: int, prior: Prior = (1.0, 1.0), arm: str = "arm") -> Prior:
    """Beta posterior parameters of a conversion rate."""
    if trials < 0 or successes < 0:
        raise ValueError(f"{arm}: counts must be non-negative, got {successes}/{trials}")
    if successes > trials:
        raise ValueError(f"{arm}: successes {successes} exceed trials {trials}")
    if not (prior[0] > 0 and prior[1] > 0):
        raise ValueError(f"prior parameters must be positive, got {prior}")
    return prior[0] + successes, prior[1] + trials - successes


def prob_b_beats_a(s_a: int, n_a: int, s_b: int, n_b: int, prior: Prior = (1.0, 1.0)) -> float:
    """Posterior probability that treatment's rate exceeds control's (exact, Evan Miller's formula)."""
    a_a, b_a = posterior(s_a, n_a, prior, "control")
    a_b, b_b = posterior(s_b, n_b, prior, "treatment")
    return prob_greater(a_b, b_b, a_a, b_a)


@dataclass(frozen=True)
class ExpectedLoss:
    """Expected rate given up by shipping each arm if the other is actually better (Stucchio)."""

    choose_a: float
    choose_b: float


def expected_loss(s_a: int, n_a: int, s_b: int, n_b: int, prior: Prior = (1.0, 1.0)) -> ExpectedLoss:
    """E[max(p_b - p_a, 0)] for choosing A and E[max(p_a - p_b, 0)] for choosing B, in closed form."""
    a_a, b_a = posterior(s_a, n_a, prior, "control")
    a_b, b_b = posterior(s_b, n_b, prior, "treatment")
    mean_a, mean_b = a_a / (a_a + b_a), a_b / (a_b + b_b)
    choose_a = mean_b * prob_greater(a_b + 1, b_b, a_a, b_a) - mean_a * prob_greater(a_b, b_b, a_a + 1, b_a)
    choose_a = max(0.0, choose_a)
    return ExpectedLoss(choose_a=choose_a, choose_b=max(0.0, choose_a - (mean_b - mean_a)))


def _lift_cdf(q: float, a_a: float, b_a: float, a_b: float, b_b: float, support: tuple[float, float]) -> float:
    """P(p_b / p_a - 1 <= q) = integral of f_a(x) * P(p_b <= (1 + q) x) dx over control's support."""
    log_norm = float(special.betaln(a_a, b_a))
    step = a_b / (a_b + b_b) / (1.0 + q)

    def integrand(x: float) -> float:
        log_pdf = (a_a - 1.0) * math.log(x) + (b_a - 1.0) * math.log1p(-x) - log_norm
        return math.exp(log_pdf) * float(special.betainc(a_b, b_b, min(1.0, (1.0 + q) * x)))

    lo, hi = support
    points = [step] if lo < step < hi else None
    value, _ = integrate.quad(integrand, lo, hi, points=points, epsabs=1e-11, limit=200)
    return value


def lift_credible_interval(
    s_a: int, n_a: int, s_b: int, n_b: int, *, level: float = 0.95, prior: Prior = (1.0, 1.0)
) -> tuple[float, float]:
    """Equal-tailed credible interval of the relative lift p_b / p_a - 1 (numerical integration).

    The root search is bracketed by a log-normal approximation widened to 12 standard deviations, then
    clipped to where both posteriors have mass, so it needs few evaluations.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level}")
    a_a, b_a = posterior(s_a, n_a, prior, "control")
    a_b, b_b = posterior(s_b, n_b, prior, "treatment")
    support_a = tuple(float(x) for x in stats.beta.ppf([1e-14, 1.0 - 1e-14], a_a, b_a))
    support_b = tuple(float(x) for x in stats.beta.ppf([1e-14, 1.0 - 1e-14], a_b, b_b))
    mean_a, mean_b = a_a / (a_a + b_a), a_b / (a_b + b_b)
    var_a = mean_a * (1.0 - mean_a) / (a_a + b_a + 1.0)
    var_b = mean_b * (1.0 - mean_b) / (a_b + b_b + 1.0)
    centre = math.log(mean_b / mean_a)
    spread = 12.0 * math.sqrt(var_a / mean_a**2 + var_b / mean_b**2)
    widest = (support_b[0] / support_a[1] - 1.0, support_b[1] / support_a[0] - 1.0)
    narrow = (max(widest[0], math.exp(centre - spread) - 1.0), min(widest[1], math.exp(centre + spread) - 1.0))
    tail = (1.0 - level) / 2.0

    def quantile(target: float) -> float:
        def gap(q: float) -> float:
            return _lift_cdf(q, a_a, b_a, a_b, b_b, support_a) - target

        bracket = narrow if gap(narrow[0]) < 0 < gap(narrow[1]) else widest
        return float(optimize.brentq(gap, *bracket, xtol=1e-8))

    return quantile(tail), quantile(1.0 - tail)


@dataclass(frozen=True)
class BayesianResult:
    """Everything the Bayesian decision rule needs about treatment (b) vs control (a)."""

    prob_b_better: float
    expected_loss_a: float
    expected_loss_b: float
    lift_ci_low: float
    lift_ci_high: float


def bayesian_ab(
    s_a: int, n_a: int, s_b: int, n_b: int, *, prior: Prior = (1.0, 1.0), level: float = 0.95
) -> BayesianResult:
    """P(b better), both expected losses and the lift's credible interval in one call."""
    loss = expected_loss(s_a, n_a, s_b, n_b, prior)
    low, high = lift_credible_interval(s_a, n_a, s_b, n_b, level=level, prior=prior)
    return BayesianResult(
        prob_b_better=prob_b_beats_a(s_a, n_a, s_b, n_b, prior),
        expected_loss_a=loss.choose_a,
        expected_loss_b=loss.choose_b,
        lift_ci_low=low,
        lift_ci_high=high,
    )

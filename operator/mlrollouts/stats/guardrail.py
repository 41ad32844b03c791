"""Is a challenger's share of bad events above its bound? A one-sided test that stays valid at every look.

The null hypothesis is "within the bound": p_c <= max, p_c - p_0 <= maxIncrease or p_c <= maxRatio * p_0
(p = bad / total per arm, counted over the current step). Evidence against it is an e-process of the
universal-inference kind (Wasserman, Ramdas & Balakrishnan 2020, PNAS 117:16880):

    W = [Jeffreys Beta(1/2, 1/2) mixture likelihood of the challenger's counts]
        / [the challenger's likelihood maximised over shares <= the allowed share m]

For any true share p_c <= m, mixture / likelihood(p_c) is a test martingale and dividing by the maximum
over the null only makes W smaller, so P(W ever reaches 1/alpha) <= alpha (Ville's inequality), however
often one looks and whatever the stopping rule. It is exact for binomial counts: no normal approximation
and no plug-in variance, so one error among a canary's first requests cannot pass for a nine-sigma event,
and 0 of 0 is no evidence at all.

`max` bounds are tested so at level alpha. A relative bound's allowed share depends on the champion's p_0,
which is unknown: it is replaced by its upper confidence sequence u_t at level alpha / 4 (the same
mixture-vs-maximum e-process, inverted), and the challenger is tested against m_t = allowed(u_t) at level
3 alpha / 4. On the event {p_0 <= u_t for all t}, of probability >= 1 - alpha / 4, a challenger within its
bound has p_c <= allowed(p_0) <= m_t, so the test above applies: the false-breach rate stays <= alpha. The
champion usually has far more traffic than a canary, so u_t is tight and costs little; mixing over p_0
instead would charge the test for the champion's uncertainty at every look.

Ruling a breach out (`clearance`) is the other half: before a canary step advances, the step's counts must
favour the allowed share m over a breach q = factor x m by 1 / beta (Wald's sequential probability ratio
test, with m at the champion's Jeffreys posterior mean for relative bounds). If the true share is q or
more, L_m / L_q is a (super)martingale of mean <= 1, so by Ville's inequality the step advances past such a
breach with probability at most beta however often it is checked: the breach is held at the step it was
found in (and rolled back once established) with probability >= 1 - beta, the guardrail's `power`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy.optimize import brentq
from scipy.special import betaln, xlog1py, xlogy

BoundKind = Literal["max", "maxIncrease", "maxRatio"]
PRIOR = 0.5
"""Jeffreys Beta(1/2, 1/2) mixing prior on a share."""
CHAMPION_SHARE = 0.25
"""Share of alpha spent on the champion's upper confidence sequence (relative bounds only)."""


@dataclass(frozen=True)
class BoundTest:
    kind: BoundKind
    limit: float
    excess: float
    """Observed challenger share minus what the bound allows at the champion's observed share (> 0: the
    estimate breaks the bound)."""
    allowed: float
    """The share the challenger was tested against (max, or the bound at the champion's upper confidence bound)."""
    log_evidence: float
    """log W; the breach is established when it reaches `log_threshold`."""
    log_threshold: float
    alpha: float
    lower_bound: float = 0.0
    """Lower end of the challenger share's confidence sequence at this test's level: the breach is
    established exactly when it is above `allowed` (the excess's lower bound is above 0)."""
    log_clearance: float = math.inf
    """log(L_m / L_q): how strongly the step's counts favour the allowed share over the breach to rule out."""
    log_clearance_threshold: float = 0.0
    """log(1 / beta); the breach q is ruled out (the step may advance) once `log_clearance` reaches it."""
    ruled_out: float = 1.0
    """The breach share q that `clearance` must rule out (factor x the allowed share)."""

    @property
    def cleared(self) -> bool:
        return self.log_clearance >= self.log_clearance_threshold

    @property
    def breach(self) -> bool:
        return self.log_evidence >= self.log_threshold

    @property
    def p_value(self) -> float:
        """alpha x (threshold / W), capped at 1: <= alpha exactly when the breach is established."""
        return min(1.0, self.alpha * math.exp(self.log_threshold - self.log_evidence))

    @property
    def possible(self) -> bool:
        """The estimate breaks the bound but the evidence does not establish it (yet)."""
        return self.excess > 0 and not self.breach


def _loglik(p: float, bad: float, total: float) -> float:
    """Binomial log-likelihood kernel (the binomial coefficient cancels in every ratio); 0 log 0 = 0."""
    return float(xlogy(bad, p) + xlog1py(total - bad, -p))


def _log_marginal(bad: float, total: float) -> float:
    """log of the Jeffreys mixture of the same kernel."""
    return float(betaln(PRIOR + bad, PRIOR + total - bad) - betaln(PRIOR, PRIOR))


def log_evidence(bad: float, total: float, limit: float) -> float:
    """log W against "share <= limit": the mixture over the likelihood maximised under the null."""
    if total == 0:
        return 0.0
    return _log_marginal(bad, total) - _loglik(min(bad / total, limit), bad, total)


def upper_bound(bad: float, total: float, alpha: float) -> float:
    """Upper end of the (1 - alpha) confidence sequence for a share: the largest q not rejected."""
    if total == 0 or bad == total:
        return 1.0
    target = math.log(1.0 / alpha)
    marginal = _log_marginal(bad, total)

    def excess_evidence(q: float) -> float:  # increasing in q above the observed share, negative at it
        return marginal - _loglik(q, bad, total) - target

    top = 1.0 - 1e-15
    if excess_evidence(top) < 0:
        return 1.0
    return float(brentq(excess_evidence, bad / total, top, xtol=1e-15))


def lower_bound(bad: float, total: float, log_threshold: float) -> float:
    """Lower end of the confidence sequence for a share: the smallest q whose null "share <= q" survives."""
    if total == 0 or bad == 0:
        return 0.0
    share = bad / total

    def excess_evidence(q: float) -> float:  # decreasing in q below the observed share
        return log_evidence(bad, total, q) - log_threshold

    if excess_evidence(1e-300) < 0:
        return 0.0
    return float(brentq(excess_evidence, 1e-300, share, xtol=1e-15))


def allowed(kind: BoundKind, limit: float, champion_share: float) -> float:
    """The largest challenger share the bound allows, given the champion's share."""
    if kind == "max":
        return limit
    if kind == "maxIncrease":
        return min(1.0, champion_share + limit)
    return min(1.0, champion_share * limit)


def breach_share(allowed_share: float, factor: float) -> float:
    """The breach to rule out: factor x the allowed share, kept below 1 (half way to 1 when that overshoots)."""
    return min(factor * allowed_share, (1.0 + allowed_share) / 2.0)


def log_clearance(bad: float, total: float, allowed_share: float, factor: float) -> float:
    """log(L_m / L_q) of the counts: Wald's evidence for the allowed share m over the breach q."""
    if allowed_share >= 1.0:
        return math.inf  # nothing can break a bound that allows every event to be bad
    if allowed_share <= 0.0:
        return 0.0 if bad == 0 else -math.inf
    breach = breach_share(allowed_share, factor)
    return _loglik(allowed_share, bad, total) - _loglik(breach, bad, total)


def bound_test(
    kind: BoundKind,
    limit: float,
    bad_c: float,
    n_c: float,
    bad_0: float = 0.0,
    n_0: float = 0.0,
    *,
    alpha: float,
    factor: float = 2.0,
    power: float = 0.9,
) -> BoundTest:
    """One look at counts of the current step: challenger (bad_c of n_c), champion (bad_0 of n_0).

    `factor` and `power` set the clearance: a breach to factor x the allowed share is ruled out with
    probability of error 1 - power (power 0: always cleared)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
    if not 0.0 <= power < 1.0 or factor <= 1.0:
        raise ValueError(f"need 0 <= power < 1 and factor > 1, got power {power}, factor {factor}")
    for arm, bad, total in (("challenger", bad_c, n_c), ("champion", bad_0, n_0)):
        if not 0 <= bad <= total:
            raise ValueError(f"{arm}: need 0 <= bad <= total, got {bad}/{total}")
    relative = kind != "max"
    challenger_alpha = alpha * (1.0 - CHAMPION_SHARE) if relative else alpha
    threshold = math.log(1.0 / challenger_alpha)
    clear_threshold = math.log(1.0 / (1.0 - power)) if power > 0 else -math.inf
    if n_c == 0 or (relative and n_0 == 0):  # nothing observed: no evidence either way
        share = allowed(kind, limit, 0.0)
        return BoundTest(
            kind, limit, 0.0, share, 0.0, threshold, alpha, 0.0, 0.0, clear_threshold, breach_share(share, factor)
        )
    share_0 = bad_0 / n_0 if relative else 0.0
    excess = bad_c / n_c - allowed(kind, limit, share_0)
    tested = allowed(kind, limit, upper_bound(bad_0, n_0, alpha * CHAMPION_SHARE)) if relative else limit
    evidence = log_evidence(bad_c, n_c, tested) if tested < 1.0 else 0.0
    # Clearance at the champion's Jeffreys posterior mean: never 0, the point estimate once there is data.
    central = allowed(kind, limit, (bad_0 + PRIOR) / (n_0 + 2 * PRIOR)) if relative else limit
    return BoundTest(
        kind,
        limit,
        excess,
        tested,
        evidence,
        threshold,
        alpha,
        lower_bound(bad_c, n_c, threshold),
        log_clearance(bad_c, n_c, central, factor),
        clear_threshold,
        breach_share(central, factor),
    )

"""Is a challenger's share of bad events above its bound? A one-sided test that stays valid at every look.

The null hypothesis is "within the bound": p_c <= max, p_c - p_0 <= maxIncrease or p_c <= maxRatio * p_0
(p = bad / total per arm, counted over the current step). The evidence against it is an e-process
(universal inference, Wasserman, Ramdas & Balakrishnan 2020, PNAS 117:16880):

    W = [Jeffreys mixture likelihood of the counts] / [likelihood maximised over the null]

For any parameter in the null, mixture / likelihood(parameter) is a test martingale (a mixture of likelihood
ratios), and dividing by the null's maximum only makes W smaller, so P(W ever reaches 1/alpha) <= alpha
under the null (Ville's inequality), however often one looks and with any stopping rule. It is exact for
binomial counts: no normal approximation and no plug-in variance, so one error among a canary's first few
requests cannot pass for a nine-sigma event, and 0 of 0 is no evidence at all (W = 1). Rejecting when
W >= 1/alpha is the same as the lower end of the matching confidence sequence for the excess lying above 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy.optimize import minimize_scalar
from scipy.special import betaln, xlog1py, xlogy

BoundKind = Literal["max", "maxIncrease", "maxRatio"]
PRIOR = 0.5
"""Jeffreys Beta(1/2, 1/2) mixing prior on each arm's share."""


@dataclass(frozen=True)
class BoundTest:
    kind: BoundKind
    limit: float
    excess: float
    """Observed challenger share minus what the bound allows (positive: the estimate breaks the bound)."""
    log_evidence: float
    """log W; the breach is established when it reaches log(1 / alpha)."""
    alpha: float

    @property
    def p_value(self) -> float:
        """Always-valid p-value at this look: 1 / W, capped at 1."""
        return min(1.0, math.exp(-self.log_evidence)) if self.log_evidence > 0 else 1.0

    @property
    def breach(self) -> bool:
        return self.log_evidence >= math.log(1.0 / self.alpha)

    @property
    def possible(self) -> bool:
        """The estimate breaks the bound but the evidence does not establish it (yet)."""
        return self.excess > 0 and not self.breach


def _loglik(p: float, bad: float, total: float) -> float:
    """Binomial log-likelihood kernel (no binomial coefficient: it cancels in the ratio); 0 log 0 = 0."""
    return float(xlogy(bad, p) + xlog1py(total - bad, -p))


def _log_marginal(bad: float, total: float) -> float:
    """log of the Beta(1/2, 1/2) mixture of the same kernel."""
    return float(betaln(PRIOR + bad, PRIOR + total - bad) - betaln(PRIOR, PRIOR))


def allowed(kind: BoundKind, limit: float, champion_share: float) -> float:
    """The largest challenger share the bound allows, given the champion's share."""
    if kind == "max":
        return limit
    if kind == "maxIncrease":
        return min(1.0, champion_share + limit)
    return min(1.0, champion_share * limit)


def _null_max_loglik(kind: BoundKind, limit: float, bad_c: float, n_c: float, bad_0: float, n_0: float) -> float:
    """The log-likelihood maximised over parameters within the bound."""
    share_c = bad_c / n_c
    if kind == "max":
        return _loglik(min(share_c, limit), bad_c, n_c)
    share_0 = bad_0 / n_0
    if share_c <= allowed(kind, limit, share_0):
        return _loglik(share_c, bad_c, n_c) + _loglik(share_0, bad_0, n_0)

    def on_boundary(p0: float) -> float:  # the unconstrained maximum is outside: the null's is on the edge
        return -(_loglik(allowed(kind, limit, p0), bad_c, n_c) + _loglik(p0, bad_0, n_0))

    top = 1.0 - limit if kind == "maxIncrease" else min(1.0, 1.0 / limit)
    found = minimize_scalar(on_boundary, bounds=(1e-15, top - 1e-15), method="bounded", options={"xatol": 1e-14})
    ends = (on_boundary(1e-15), on_boundary(top - 1e-15))
    return -min(float(found.fun), *ends)


def bound_test(
    kind: BoundKind, limit: float, bad_c: float, n_c: float, bad_0: float = 0.0, n_0: float = 0.0, *, alpha: float
) -> BoundTest:
    """One look at counts of the current step: challenger (bad_c of n_c), champion (bad_0 of n_0)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
    for arm, bad, total in (("challenger", bad_c, n_c), ("champion", bad_0, n_0)):
        if not 0 <= bad <= total:
            raise ValueError(f"{arm}: need 0 <= bad <= total, got {bad}/{total}")
    relative = kind != "max"
    if n_c == 0 or (relative and n_0 == 0):  # nothing observed: no evidence either way
        return BoundTest(kind, limit, 0.0, 0.0, alpha)
    share_0 = bad_0 / n_0 if relative else 0.0
    excess = bad_c / n_c - allowed(kind, limit, share_0)
    numerator = _log_marginal(bad_c, n_c) + (_log_marginal(bad_0, n_0) if relative else 0.0)
    log_evidence = numerator - _null_max_loglik(kind, limit, bad_c, n_c, bad_0, n_0)
    return BoundTest(kind, limit, excess, log_evidence, alpha)

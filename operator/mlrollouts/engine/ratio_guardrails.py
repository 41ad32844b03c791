"""Ratio guardrails (`type: ratio`): the share bad / total of each checked challenger, judged per step.

Each bound (max, maxIncrease, maxRatio) of each checked challenger is one sequential test
(stats/guardrail.py) at alpha / (bounds x challengers), Bonferroni, so a challenger within every bound is
rolled back by this guardrail with probability at most `alpha` per step, however often it is checked.
Verdicts: breach (established: rollback), possible (the estimate breaks a bound but the evidence does not
establish it: the guardrail is unhealthy, so a canary holds its step and gathers more evidence rather than
advancing), ok, or noData (no events this step: 0 of 0 is no evidence, it neither fails nor rolls back).
Apart from the verdict, `cleared` says whether the step's counts rule out a breach of `detectableBreach` x
each bound (Wald, at 1 - power): a canary step advances only then, so a breach of that size is held at the
step it was found in with probability >= power, even while its estimate happens to sit within the bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlrollouts.api.guardrails import Guardrail
from mlrollouts.api.status import GuardrailCounts, GuardrailStatus
from mlrollouts.engine.guardrail_counts import step_counts
from mlrollouts.engine.tick import fmt
from mlrollouts.stats.guardrail import BoundKind, BoundTest, allowed, bound_test


def bounds_of(guardrail: Guardrail) -> list[tuple[BoundKind, float]]:
    pairs: list[tuple[BoundKind, float | None]] = [
        ("max", guardrail.max),
        ("maxIncrease", guardrail.max_increase),
        ("maxRatio", guardrail.max_ratio),
    ]
    return [(kind, limit) for kind, limit in pairs if limit is not None]


def _share(bad: float, total: float) -> str:
    return f"{fmt(bad / total)} ({fmt(bad)} of {fmt(total)} this step)" if total else "n/a (0 of 0 this step)"


def _bound_text(test: BoundTest, champion: tuple[float, float]) -> str:
    if test.kind == "max":
        return f"max {fmt(test.limit)}"
    share_0 = champion[0] / champion[1]
    limit = f"{test.kind} {fmt(test.limit)}"
    return f"{limit} of champion {_share(*champion)}, i.e. {fmt(allowed(test.kind, test.limit, share_0))}"


@dataclass(frozen=True)
class RatioCheck:
    status: GuardrailStatus
    problem: str | None
    """"error-rate of churn-v3 0.006 (...) breaks max 0.005" for the worst challenger, when not ok."""
    breach: bool


def check_ratio(
    guardrail: Guardrail, counts: GuardrailCounts, champion_name: str, checked: list[str], threshold: str
) -> RatioCheck:
    bounds = bounds_of(guardrail)
    alpha = guardrail.test_alpha / (len(bounds) * max(1, len(checked)))
    champion = step_counts(counts, guardrail.name, champion_name)
    worst: tuple[str, BoundTest, tuple[float, float]] | None = None
    uncleared: list[str] = []
    power, factor = guardrail.test_power, guardrail.breach_factor
    for variant in checked:
        bad, total = step_counts(counts, guardrail.name, variant)
        for kind, limit in bounds:
            test = bound_test(kind, limit, bad, total, *champion, alpha=alpha, factor=factor, power=power)
            if not test.cleared:
                uncleared.append(f"{variant} at {fmt(test.ruled_out)} ({kind} {fmt(limit)} x {fmt(factor)})")
            if worst is None or (test.breach, test.excess > 0, test.log_evidence) > (
                worst[1].breach,
                worst[1].excess > 0,
                worst[1].log_evidence,
            ):
                worst = (variant, test, (bad, total))
    if worst is None:  # no challenger takes traffic: nothing to judge
        status = GuardrailStatus(name=guardrail.name, threshold=threshold, verdict="noData", alpha=alpha)
        return RatioCheck(status, None, False)
    variant, test, (bad, total) = worst
    no_data = total == 0 or (test.kind != "max" and champion[1] == 0)
    verdict = "noData" if no_data else "breach" if test.breach else "possible" if test.possible else "ok"
    status = GuardrailStatus(
        name=guardrail.name,
        variant=variant,
        value=bad / total if total else None,
        champion_value=champion[0] / champion[1] if champion[1] else None,
        threshold=threshold,
        healthy=verdict in ("ok", "noData"),
        verdict=verdict,
        bad=bad,
        total=total,
        champion_bad=champion[0],
        champion_total=champion[1],
        lower_bound=test.lower_bound,
        p_value=test.p_value,
        alpha=alpha,
        cleared=not uncleared,
        uncleared=", ".join(uncleared) or None,
    )
    problem = None
    if verdict in ("possible", "breach"):
        how = (
            f"established by the sequential test: the share is at least {fmt(test.lower_bound)} > "
            f"{fmt(test.allowed)} allowed (p = {test.p_value:.2g} <= alpha {fmt(alpha)})"
            if test.breach
            else f"not established yet (p = {test.p_value:.2g} > alpha {fmt(alpha)}): holding the step"
        )
        problem = f"{guardrail.name} of {variant} {_share(bad, total)} breaks {_bound_text(test, champion)}, {how}"
    return RatioCheck(status, problem, verdict == "breach")

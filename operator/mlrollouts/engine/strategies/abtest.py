"""A/B/n test with a fixed split, decided by `statistics.method`.

- sequential: may stop at any tick, for a winner or for harm, when the Holm-adjusted always-valid p < alpha.
- fixedHorizon: looks only once every variant has the planned requiredPerVariant trials; then a winner is
  promoted, all-worse rolls back, anything else is Inconclusive (the planned test has spoken). When the
  plan is reached before minDuration, the test waits for minDuration and the evidence then decides
  (a significant winner wins; Inconclusive only when nothing is significant by then).
- bayesian (`bayes`): better = P(better) >= probabilityThreshold and expected relative loss of switching <
  lossThreshold; worse = P(worse) >= probabilityThreshold and relative loss of keeping the champion <
  lossThreshold, both from a spike-and-slab posterior whose error rate under any schedule of looks is bounded.
Winner = the significantly-better challenger with the strongest evidence. minDuration delays promotion
only; harm is acted on at once. Harm with one challenger rolls back; with several the harmful challenger is
dropped (weight 0, its share returned to the champion, history entry) and the others continue, until none
is left (rollback). maxDuration without a decision: phase Inconclusive, champion 100 %.
"""

from __future__ import annotations

from mlrollouts.api.durations import parse_duration
from mlrollouts.api.status import Comparison
from mlrollouts.engine import analysis, bayes
from mlrollouts.engine.guardrails import GuardrailCheck
from mlrollouts.engine.planning import update_plan
from mlrollouts.engine.running import waiting_on_guardrails
from mlrollouts.engine.tick import Tick, fmt
from mlrollouts.engine.transitions import inconclusive, promote_or_wait, rollback


def _evidence(c: Comparison) -> str:
    if c.probability_better is not None:
        return f"P(better) = {c.probability_better:.3f}, expected loss {c.expected_loss:.3g}"
    p = c.adjusted_p_value if c.adjusted_p_value is not None else c.p_value
    lift = f"lift {fmt(100 * c.relative_lift)}%, " if c.relative_lift is not None else ""
    return f"{lift}p = {p:.3g}" + (" (Holm-adjusted)" if c.adjusted_p_value is not None else "")


def compare_all(tick: Tick, active: list[str]) -> list[Comparison]:
    spec, status = tick.spec, tick.status
    method = spec.analysis.statistics.method
    champion = status.samples.get(spec.champion.name)
    ready = [n for n in active if analysis.ready(spec, champion) and analysis.ready(spec, status.samples.get(n))]
    if method == "bayesian":
        found = [r for r in (bayes.bayesian(spec, status, n) for n in ready) if r is not None]
        tick.update(evidence={**status.evidence, **{c.challenger: e for c, e in found}})
        return [c for c, _ in found]
    if method == "sequential":
        results = [r for r in (analysis.sequential(spec, status, n) for n in ready) if r is not None]
        tick.update(evidence={**status.evidence, **{c.challenger: e for c, e in results}})
        comparisons = [c for c, _ in results]
        # Holm decides significance; the direction is the confidence sequence's, never the current estimate's.
        signs = {c.challenger: _sign(tick.status.evidence[c.challenger].confidence_interval) for c in comparisons}
        return analysis.holm(spec, comparisons, signs)
    comparisons = [analysis.fixed_horizon(spec, champion, status.samples[n], n) for n in ready]
    base = analysis.mean_of(spec, champion) if comparisons else 0.0
    differences = {n: analysis.mean_of(spec, status.samples[n]) - base for n in ready}
    return analysis.holm(spec, comparisons, differences)


def _sign(interval: list[float | None]) -> float:
    low, high = interval
    return 1.0 if low is not None and low > 0 else -1.0 if high is not None and high < 0 else 0.0


def _drop(tick: Tick, losers: list[Comparison]) -> None:
    weights = dict(tick.status.weights)
    for loser in losers:
        weights[tick.spec.champion.name] += weights[loser.challenger]
        weights[loser.challenger] = 0
    before = tick.describe_weights()
    names = ", ".join(f"{c.challenger} ({_evidence(c)})" for c in losers)
    message = f"dropped significantly worse challenger(s) {names}; their traffic returns to the champion"
    tick.set_weights(weights)
    tick.record("drop", before, tick.describe_weights(), message)
    tick.event("Warning", "ChallengerDropped", message)
    tick.decide("continue", message)


def step(tick: Tick, check: GuardrailCheck) -> None:
    spec, status = tick.spec, tick.status
    assert spec.ab_test is not None
    method = spec.analysis.statistics.method
    metric = spec.analysis.primary_metric.name
    active = [c.name for c in spec.challengers if status.weights.get(c.name, 0) > 0]
    plan = update_plan(tick)
    at_horizon = (
        plan is not None
        and plan.required_per_variant is not None
        and all(
            (status.samples[n].size if n in status.samples else 0) >= plan.required_per_variant
            for n in [spec.champion.name, *active]
        )
    )
    comparisons = compare_all(tick, active)
    top = analysis.headline(comparisons)
    tick.note(
        comparisons=comparisons,
        p_value=top.adjusted_p_value if top and top.adjusted_p_value is not None else (top.p_value if top else None),
        confidence_interval=top.confidence_interval if top else None,
        relative_lift=top.relative_lift if top else None,
        probability_better=top.probability_better if top else None,
        expected_loss=top.expected_loss if top else None,
    )
    elapsed = tick.now - (status.started_at or tick.now)
    waited = elapsed >= parse_duration(spec.ab_test.min_duration)
    decisive = method != "fixedHorizon" or (at_horizon and waited)  # a fixed-horizon test gets one look
    worse = [c for c in comparisons if c.verdict == "worse"] if decisive else []
    better = [c for c in comparisons if c.verdict == "better"] if decisive else []
    healthy = waiting_on_guardrails(check) is None
    if better and healthy and waited:
        winner = analysis.headline(better)
        message = f"{winner.challenger} is better than {spec.champion.name} on {metric} ({_evidence(winner)})"
        promote_or_wait(tick, winner.challenger, message, f"{message}: promoted")
        return
    if worse and len(worse) == len(active):
        reasons = "; ".join(f"{c.challenger} worse ({_evidence(c)})" for c in worse)
        rollback(tick, "PrimaryMetricWorse", f"{metric}: {reasons}", winner=spec.champion.name)
        return
    if worse:
        _drop(tick, worse)
        return
    if method == "fixedHorizon" and at_horizon and waited:
        inconclusive(tick, f"planned sample size {plan.required_per_variant} reached with no significant difference")
        return
    if elapsed >= parse_duration(spec.ab_test.max_duration):
        inconclusive(tick, f"maxDuration {spec.ab_test.max_duration} reached without a decision")
        return
    progress = "no plan yet"
    if plan is not None and plan.required_per_variant is not None:
        progress = f"plan {plan.required_per_variant} per variant"
        if plan.estimated_completion is not None:
            progress += f", ETA {plan.estimated_completion:%Y-%m-%dT%H:%MZ}"
    evidence = _evidence(top) if top else "no comparison yet"
    if better:
        evidence += f"; {better[0].challenger} looks better but minDuration {spec.ab_test.min_duration} has not passed"
    tick.decide("continue", f"{method} test of {metric}: no decision yet ({evidence}; {progress})")

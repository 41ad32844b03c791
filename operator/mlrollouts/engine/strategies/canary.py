"""Canary: move the challenger through `canary.steps`, one step per proven-safe interval.

A step advances only when it has lasted stepDuration, every variant with traffic got minSamplesPerStep new
trials, every guardrail is healthy, every ratio guardrail's step counts rule out a breach of its
`detectableBreach` (so a breach found at a step is held there with the guardrail's `power`), and the primary
metric is not significantly worse. Promotion (leaving the
last step) also needs non-inferiority: the confidence sequence must rule out a loss larger than
`primaryMetric.nonInferiorityMargin` (default minimumDetectableEffect, relative), so the chance of promoting
a challenger worse than the margin is at most alpha; until then the canary holds at its last step and says
by how much the worst case still exceeds the margin. The test is the
always-valid sequential one whatever `statistics.method` says: a canary looks at the data every tick, and
only an always-valid p-value survives that. Significantly worse rolls back at once.
The step whose weight is 100 is never entered as a step: reaching it is the promotion. With autoPromote
false the experiment waits at the step before 100 in phase Paused, reason ReadyToPromote, for a manual
promote (sending 100 % to an unapproved challenger would defeat the purpose of asking).
"""

from __future__ import annotations

from mlrollouts.api.durations import parse_duration, promql_duration
from mlrollouts.engine import analysis
from mlrollouts.engine.guardrails import GuardrailCheck
from mlrollouts.engine.running import waiting_on_clearance, waiting_on_guardrails
from mlrollouts.engine.tick import Tick, fmt
from mlrollouts.engine.traffic import canary_weights
from mlrollouts.engine.transitions import promote_or_wait, rollback


def _compare(tick: Tick):
    challenger = tick.spec.challengers[0].name
    result = analysis.sequential(tick.spec, tick.status, challenger)
    if result is None:
        return None
    comparison, evidence = result
    tick.update(evidence={**tick.status.evidence, challenger: evidence})
    tick.note(
        p_value=comparison.p_value,
        confidence_interval=comparison.confidence_interval,
        relative_lift=comparison.relative_lift,
        comparisons=[comparison],
    )
    return comparison


def step(tick: Tick, check: GuardrailCheck) -> None:
    spec, status = tick.spec, tick.status
    assert spec.canary is not None
    steps, index = spec.canary.steps, status.step or 0
    challenger = spec.challengers[0].name
    metric = spec.analysis.primary_metric
    alpha = spec.analysis.statistics.alpha
    comparison = _compare(tick)
    lift = f"lift {fmt(100 * comparison.relative_lift)}%" if comparison and comparison.relative_lift is not None else ""
    if comparison is not None and comparison.verdict == "worse":
        rollback(
            tick,
            "PrimaryMetricWorse",
            f"{metric.name} of {challenger} is significantly worse ({lift}, always-valid p = "
            f"{comparison.p_value:.3g} < alpha {fmt(alpha)})",
        )
        return
    elapsed = tick.now - (status.step_started_at or tick.now)
    needed = parse_duration(spec.canary.step_duration)
    waiting = []
    if elapsed < needed:
        waiting.append(f"{promql_duration(elapsed)} of {promql_duration(needed)} elapsed")
    for name in spec.variant_names:
        if status.weights.get(name, 0) > 0 and tick.new_trials(name) < spec.canary.min_samples_per_step:
            waiting.append(f"{name} has {fmt(tick.new_trials(name))} of {spec.canary.min_samples_per_step} new trials")
    for reason in (waiting_on_guardrails(check), waiting_on_clearance(check)):
        if reason:
            waiting.append(reason)
    last = index + 1 >= len(steps) or steps[index + 1] == 100
    p_text = f"always-valid p = {comparison.p_value:.3g}" if comparison is not None else "no comparison yet"
    evidence = f"{promql_duration(needed)} elapsed, samples and guardrails ok, {p_text} not worse"
    if last:
        shown, margin_text = analysis.non_inferior(spec, tick.status, challenger)
        evidence += f", {margin_text}"
        if not shown:
            waiting.append(margin_text)
    where = f"step {index} ({steps[index]}%)"
    if waiting:
        tick.decide("continue", f"{where}: waiting: {'; '.join(waiting)} ({p_text})")
        return
    if last:
        passed = f"{where} passed ({evidence})"
        promote_or_wait(tick, challenger, passed, f"{passed}: {challenger} promoted to 100%")
        return
    before = tick.describe_weights()
    tick.set_weights(canary_weights(spec, index + 1))
    message = f"{where} passed ({evidence}): advancing to step {index + 1} ({steps[index + 1]}%)"
    tick.update(step=index + 1, reason="StepAdvanced", message=message)
    tick.record("advance", before, tick.describe_weights(), message)
    tick.decide("advance", message)
    tick.event("Normal", "StepAdvanced", message)

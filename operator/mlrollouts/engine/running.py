"""One tick of analysis for a running (or paused) experiment: what every strategy shares.

Order, so that safety comes first: samples -> metrics availability -> guardrails (may roll back, even
while Paused) -> Paused stops here -> sample-ratio check (may pause) -> the strategy's own rule.

A sample ratio mismatch pauses only when SRM_CONFIRMATIONS consecutive checks find it; after the first, the
tick holds (nothing advances). The variants' counts are separate queries, and a read that falls between
them and a scrape skews one tick's counts by a scrape's worth of requests; a real mismatch persists, a
skewed read does not.

Metrics unavailable (a needed value is None, NaN or missing) is never "bad": `metricsFailures` counts
consecutive such ticks and nothing advances, promotes or counts as a guardrail failure. At
`metricsFailureLimit` the experiment pauses (reason MetricsUnavailable, traffic kept) or rolls back, per
`onMetricsUnavailable`. When data comes back the count resets and an experiment paused for
MetricsUnavailable resumes by itself (fresh step window), since nothing but the data was wrong.
A Paused experiment only holds on missing metrics (it already moves nothing).
`observations.errors` only explain missing values; errors about values that are not needed are ignored.
"""

from __future__ import annotations

from mlrollouts.api.status import GuardrailStatus
from mlrollouts.engine import gates, guardrails
from mlrollouts.engine.guardrail_counts import update_counts
from mlrollouts.engine.lifecycle import manual_winner
from mlrollouts.engine.samples import update_samples
from mlrollouts.engine.srm import check_sample_ratio
from mlrollouts.engine.tick import Tick, fmt
from mlrollouts.engine.transitions import pause, promote, resume, rollback
from mlrollouts.engine.types import Observations

SRM_CONFIRMATIONS = 2


def live_challengers(tick: Tick) -> list[str]:
    """Challengers taking live or mirrored traffic: the ones whose data and health matter."""
    mirrored = bool(tick.status.mirror_percent)
    return [c.name for c in tick.spec.challengers if mirrored or tick.status.weights.get(c.name, 0) > 0]


def needed_sample_variants(tick: Tick) -> set[str]:
    """Shadows produce no outcomes (their answers are discarded), so a shadow test needs no samples."""
    if tick.spec.strategy == "shadow":
        return set()
    return {name for name, weight in tick.status.weights.items() if weight > 0}


def metrics_unavailable(tick: Tick, missing: list[str], observations: Observations) -> None:
    spec = tick.spec
    failures = tick.status.metrics_failures + 1
    detail = "; ".join(observations.errors) or f"no value for {', '.join(missing[:5])}"
    message = f"metrics unavailable ({failures}/{spec.metrics_failure_limit} consecutive): {detail}"
    tick.metrics_message = detail
    tick.update(metrics_failures=failures)
    if failures == 1:
        tick.event("Warning", "MetricsUnavailable", message)
    if failures < spec.metrics_failure_limit or tick.status.phase == "Paused":
        tick.decide("hold", f"holding: {message}")
    elif spec.on_metrics_unavailable == "rollback":
        rollback(tick, "MetricsUnavailable", f"{message}; onMetricsUnavailable is rollback")
    else:
        pause(tick, "MetricsUnavailable", f"{message}; onMetricsUnavailable is hold", kind="hold")


def analyse(tick: Tick, observations: Observations, strategy_step) -> None:
    spec = tick.spec
    checked = live_challengers(tick)
    update = update_samples(spec, tick.status, observations, needed_sample_variants(tick))
    missing = update.missing + guardrails.missing_values(spec, observations, checked)
    if missing:
        metrics_unavailable(tick, missing, observations)
        return
    ratio_counts = update_counts(spec, tick.status.guardrail_counts, observations)
    tick.update(
        samples=update.samples, counters=update.counters, guardrail_counts=ratio_counts, last_analysis_at=tick.now
    )
    if tick.status.metrics_failures:
        failures = tick.status.metrics_failures
        tick.update(metrics_failures=0)
        if tick.status.phase == "Paused" and tick.status.reason == "MetricsUnavailable":
            resume(tick, "MetricsRecovered", f"metrics available again after {failures} failed reads: resuming")
        else:
            tick.event("Normal", "MetricsRecovered", f"metrics available again after {failures} failed reads")
    check = guardrails.evaluate(spec, tick.status.guardrails, observations, checked, ratio_counts)
    tick.update(guardrails=check.statuses)
    for sentence in check.newly_failing:
        tick.event("Warning", "GuardrailFailing", sentence)
    for sentence in check.recovered:
        tick.event("Normal", "GuardrailRecovered", sentence)
    if check.breach is not None:
        rollback(tick, "GuardrailFailed", check.breach)
        return
    if tick.status.phase == "Paused":
        if tick.status.reason == gates.READY_REASON and gates.confirms_promotion(spec):
            confirm_promotion(tick, observations)
            return
        tick.decide("pause", f"paused ({tick.status.reason}): {tick.status.message}")
        return
    srm = check_sample_ratio(tick)
    if srm is not None:
        tick.note(srm_p_value=srm.p_value)
        if srm.mismatch:
            mismatches = tick.status.srm_mismatches + 1
            tick.update(srm_mismatches=mismatches)
            if mismatches >= SRM_CONFIRMATIONS:
                pause(tick, "SampleRatioMismatch", srm.message)
            else:
                tick.decide("hold", f"possible {srm.message}; holding until the next check confirms it")
            return
        tick.update(srm_mismatches=0)
    strategy_step(tick, check)


def confirm_promotion(tick: Tick, observations: Observations) -> None:
    """At ReadyToPromote: promote once every confirmPromotion webhook answered 2xx this tick, else keep waiting."""
    problem = gates.blocking(tick.spec, observations, "confirmPromotion")
    winner = manual_winner(tick)
    if problem is None:
        promote(tick, winner, f"the confirmPromotion webhooks answered 2xx: {winner} promoted to 100%")
        return
    message = tick.status.message.split(": waiting for the confirmPromotion webhooks", 1)[0]
    pause(tick, gates.READY_REASON, f"{message}: waiting for the confirmPromotion webhooks to answer 2xx ({problem})")


def waiting_on_guardrails(check: guardrails.GuardrailCheck) -> str | None:
    failing = [s for s in check.statuses if not s.healthy]
    if not failing:
        return None
    return ", ".join(_failing_text(s) for s in failing)


def waiting_on_clearance(check: guardrails.GuardrailCheck) -> str | None:
    """Healthy ratio guardrails whose step counts do not yet rule out the breach their power is about."""
    pending = [s for s in check.statuses if s.healthy and s.cleared is False]
    if not pending:
        return None
    return ", ".join(
        f"{s.name} has not yet ruled out a breach ({fmt(s.bad)} of {fmt(s.total)} this step; "
        f"to rule out: {s.uncleared})"
        for s in pending
    )


def _failing_text(s: GuardrailStatus) -> str:
    if s.verdict is not None:  # a ratio guardrail: the estimate breaks the bound, not (yet) established
        return (
            f"{s.name} possibly breached ({fmt(s.bad)} of {fmt(s.total)} this step, {s.threshold}, p {fmt(s.p_value)})"
        )
    return f"{s.name} failing ({s.consecutive_failures} consecutive, value {fmt(s.value)}, {s.threshold})"

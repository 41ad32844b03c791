"""Starting, manual actions and spec changes: everything that is not a tick of analysis.

Manual actions (promote, rollback, pause, resume) override every automatic rule, are recorded in history
and are ignored, with an Event, in terminal phases. Before the first step (Pending, e.g. waiting for its
metrics) only rollback applies: it ends the experiment with the champion keeping all traffic. Promote,
pause and resume need a running experiment; they are ignored with an Event saying so, never silently.
A manual promote picks the challenger for canary and shadow; for A/B/n and bandit the challenger with the
strongest evidence of being better (lowest p, highest P(better)), else the one with the best observed
primary metric, else the first.

Spec change mid-flight (metadata.generation != status.observedGeneration), documented rule:
- same strategy and variants: keep the traffic, restart the analysis. Samples, counters (re-baselined at
  the next observation), sequential p-values, guardrail counts and metrics failures reset; startedAt and
  stepStartedAt = now (the analysis window and maxDuration restart). Canary keeps the largest new step
  whose weight is <= the current weight, so exposure never grows, except up to the new first step when
  the current weight is below it. An A/B split and a shadow's mirrorPercent take their new values. A
  Paused experiment stays Paused only for ManualPause; otherwise it resumes running.
- strategy or variants changed: the experiment restarts from the beginning (step 0 of the new strategy).
Either way an Event SpecChanged and a history entry say what happened: never a silent jump.
"""

from __future__ import annotations

from mlrollouts.api.status import GuardrailCounts
from mlrollouts.engine import analysis
from mlrollouts.engine.tick import Tick, fmt, running_phase
from mlrollouts.engine.traffic import canary_weights, initial_mirror, initial_weights
from mlrollouts.engine.transitions import pause, promote, resume, rollback
from mlrollouts.engine.types import ManualAction


def start(tick: Tick, generation: int | None, *, why: str = "started") -> None:
    spec = tick.spec
    weights = initial_weights(spec)
    message = f"{why}: {spec.strategy} with {tick.describe_weights(weights)}"
    if spec.strategy == "shadow":
        message += f", mirroring {initial_mirror(spec)}% of requests to the shadow"
    phase = running_phase(spec)
    tick.record("start", tick.status.phase, phase, message)
    tick.update(
        phase=phase,
        reason="Started",
        message=message,
        strategy=spec.strategy,
        observed_generation=generation,
        step=0,
        started_at=tick.now,
        finished_at=None,
        last_allocation_at=tick.now if spec.strategy == "bandit" else None,
        mirror_percent=initial_mirror(spec),
        samples={},
        counters={},
        evidence={},
        epoch_start_samples={},
        recheck=None,
        srm_log_evidence=0.0,
        srm_window_log_evidence=0.0,
        metrics_failures=0,
        guardrails=[],
        guardrail_counts=GuardrailCounts(),
        plan=None,
        winner=None,
        analysis=None,
    )
    tick.set_weights(weights)
    tick.decide("continue", message)
    tick.event("Normal", "Started", message)


def manual_winner(tick: Tick) -> str:
    spec, status = tick.spec, tick.status
    active = [c.name for c in spec.challengers if status.weights.get(c.name, 0) > 0] or [spec.challengers[0].name]
    if len(active) == 1:
        return active[0]
    comparisons = [c for c in (status.analysis.comparisons if status.analysis else []) if c.challenger in active]
    best = analysis.headline([c for c in comparisons if c.verdict == "better"])
    if best is not None:
        return best.challenger
    observed = [name for name in active if analysis.ready(spec, status.samples.get(name))]
    if observed:
        sign = 1.0 if spec.analysis.primary_metric.direction == "increase" else -1.0
        return max(observed, key=lambda name: sign * analysis.mean_of(spec, status.samples[name]))
    return active[0]


def apply_manual(tick: Tick, action: ManualAction) -> None:
    phase = tick.status.phase
    if action == "promote":
        winner = manual_winner(tick)
        promote(tick, winner, f"manual promote: {winner} receives 100% of traffic", reason="ManualPromotion")
    elif action == "rollback":
        rollback(tick, "ManualRollback", f"manual rollback: {tick.spec.champion.name} receives 100% of traffic")
    elif action == "pause":
        pause(tick, "ManualPause", f"paused by request at {tick.describe_weights()} (traffic kept)")
    elif phase == "Paused":
        resume(tick, "Resumed", f"resumed by request from {tick.status.reason} at {tick.describe_weights()}")
    else:
        message = f"resume ignored: the experiment is {phase}, not Paused"
        tick.event("Normal", "ManualActionIgnored", message)
        tick.decide("continue", message)


def rollback_before_start(tick: Tick, generation: int | None) -> None:
    """Abandon an experiment that never moved traffic: terminal, the champion keeps 100 %."""
    tick.update(strategy=tick.spec.strategy, observed_generation=generation)
    champion = tick.spec.champion.name
    rollback(tick, "ManualRollback", f"manual rollback before the first step: {champion} keeps 100% of traffic")


def ignore_before_start(tick: Tick, action: ManualAction) -> None:
    """Say why a promote, pause or resume did nothing: the experiment has no step to act on yet."""
    where = f"{tick.status.phase}, {tick.status.reason}" if tick.status.reason else tick.status.phase or "new"
    message = (
        f"{action} not applied: the experiment has not started ({where}) and has moved no traffic; "
        "request it again once it runs, or rollback to end it now"
    )
    tick.event("Normal", "ManualActionIgnored", message)


def _clamped_step(tick: Tick) -> int:
    assert tick.spec.canary is not None
    steps = tick.spec.canary.steps
    current = tick.status.weights.get(tick.spec.challengers[0].name, 0)
    fitting = [index for index, weight in enumerate(steps) if weight <= current]
    return fitting[-1] if fitting else 0


def spec_changed(tick: Tick, generation: int) -> None:
    spec, status = tick.spec, tick.status
    old = status.observed_generation
    if status.strategy not in (None, spec.strategy) or set(status.weights) != set(spec.variant_names):
        what = (
            f"strategy changed from {status.strategy} to {spec.strategy}"
            if status.strategy not in (None, spec.strategy)
            else f"variants changed to {', '.join(spec.variant_names)}"
        )
        tick.event("Warning", "SpecChanged", f"generation {old} -> {generation}: {what}; restarting from step 0")
        start(tick, generation, why=f"restarted after spec change ({what})")
        return
    weights, step = dict(status.weights), status.step or 0
    if spec.strategy == "canary":
        step = _clamped_step(tick)
        weights = canary_weights(spec, step)
    elif spec.strategy == "abTest":
        weights = initial_weights(spec)
    mirror = initial_mirror(spec)
    keep_paused = status.phase == "Paused" and status.reason == "ManualPause"
    phase = status.phase if keep_paused else running_phase(spec)
    message = (
        f"spec changed (generation {fmt(old)} -> {generation}): analysis restarted at step {step} "
        f"with {tick.describe_weights(weights)}"
    )
    tick.record("specChange", status.phase, phase, message)
    tick.event("Normal", "SpecChanged", message)
    tick.set_weights(weights)
    tick.update(
        phase=phase,
        reason=status.reason if keep_paused else "SpecChanged",
        message=status.message if keep_paused else message,
        observed_generation=generation,
        step=step,
        started_at=tick.now,
        mirror_percent=mirror,
        samples={},
        counters={},
        step_start_samples={},
        srm_window_samples={},
        srm_mismatches=0,
        evidence={},
        epoch_start_samples={},
        recheck=None,
        srm_log_evidence=0.0,
        srm_window_log_evidence=0.0,
        metrics_failures=0,
        guardrails=[],
        guardrail_counts=GuardrailCounts(),
        plan=None,
    )
    tick.decide("pause" if keep_paused else "continue", message)

"""Shadow: mirror live requests to the challengers, whose answers are discarded, and watch their health.

The live split stays champion 100 %. Guardrails compare each shadow with the champion; failureLimit
consecutive failures roll back (mirror removed). Documented choice for the end: a shadow never sends live
traffic to a challenger, so passing is not a promotion. After `shadow.duration` (measured from the last
(re)start or resume) with every guardrail healthy at the last check, the experiment stops in phase Paused,
reason ShadowPassed, "ready for a canary", with the mirror removed. Resume runs another full duration.
"""

from __future__ import annotations

from mlrollouts.api.durations import parse_duration
from mlrollouts.engine.guardrails import GuardrailCheck
from mlrollouts.engine.running import waiting_on_guardrails
from mlrollouts.engine.tick import Tick, fmt
from mlrollouts.engine.transitions import pause


def step(tick: Tick, check: GuardrailCheck) -> None:
    spec = tick.spec
    assert spec.shadow is not None
    elapsed = tick.now - (tick.status.step_started_at or tick.now)
    duration = parse_duration(spec.shadow.duration)
    summary = (
        ", ".join(f"{s.name} {fmt(s.value)} (champion {fmt(s.champion_value)}, {s.threshold})" for s in check.statuses)
        or "no guardrails configured"
    )
    unhealthy = waiting_on_guardrails(check)
    if elapsed >= duration and unhealthy is None:
        shadows = ", ".join(c.name for c in spec.challengers)
        message = (
            f"shadow of {shadows} passed {spec.shadow.duration} with healthy guardrails ({summary}): "
            "ready for a canary; mirror removed"
        )
        tick.update(mirror_percent=None)
        pause(tick, "ShadowPassed", message, kind="conclude")
        return
    remaining = max(0.0, (duration - elapsed).total_seconds() / 60)
    waiting = f"guardrails failing: {unhealthy}" if unhealthy else f"guardrails healthy: {summary}"
    tick.decide("continue", f"shadowing, {fmt(round(remaining, 1))}m of {spec.shadow.duration} left; {waiting}")

"""Webhook gates (spec.webhooks) as the engine sees them: which to ask before a tick, and what their answers mean.

The engine stays pure: it never calls anything. Before a tick the controller asks `due(spec, status)` which
gate types to call, calls them, and hands the answers in as `Observations.gates`; the engine reads them like
metric values. Rules:

- preStart: while the experiment has not started, every preStart gate must answer 2xx (in the same tick)
  before the first step moves traffic; until then the experiment stays Pending, reason AwaitingPreStart.
- confirmPromotion (with autoPromote true): where a strategy would promote, it stops at Paused/ReadyToPromote
  instead; from then every tick asks the confirmPromotion gates, and the first tick in which all answer 2xx
  promotes. Guardrails keep being checked (and may roll back) while it waits; a manual promote or rollback
  overrides the gate. With autoPromote false a person promotes and the gate is not asked.
- loadTest: called every tick while a step runs (Progressing or Shadowing), to generate traffic. Its answer
  is recorded and a failure is a Warning Event, but it decides nothing: too little traffic already holds the
  step through minSamplesPerStep, so a broken load generator can stall an experiment, never promote one.
- onRollback: an action (CallWebhooks) emitted with the rollback; the controller calls it after moving traffic.

Every answer is recorded in status.webhooks (last answer per gate); a gate that starts failing or recovers
posts an Event (repeats of a failure aggregate into one Event with a count).
"""

from __future__ import annotations

from datetime import datetime

from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import ModelExperimentStatus
from mlrollouts.api.webhooks import Webhook, WebhookStatus
from mlrollouts.engine.tick import RUNNING_PHASES, Tick
from mlrollouts.engine.types import Event, GateResult, Observations

PRE_START_REASON = "AwaitingPreStart"
READY_REASON = "ReadyToPromote"
NOT_STARTED = frozenset({None, "Pending", "Invalid"})


def hooks(spec: ModelExperimentSpec, kind: str) -> list[Webhook]:
    return [hook for hook in spec.webhooks or [] if hook.type == kind]


def confirms_promotion(spec: ModelExperimentSpec) -> bool:
    """Promotion waits for a webhook (and not for a person: with autoPromote false a person decides)."""
    return spec.auto_promote and bool(hooks(spec, "confirmPromotion"))


def due(spec: ModelExperimentSpec, status: ModelExperimentStatus) -> tuple[str, ...]:
    """The gate types the controller must call before this tick's decision (none for a terminal phase)."""
    if status.is_terminal:
        return ()
    wanted: list[str] = []
    if status.phase in NOT_STARTED:
        wanted.append("preStart")
    elif status.phase in RUNNING_PHASES:
        wanted.append("loadTest")
    elif status.phase == "Paused" and status.reason == READY_REASON and confirms_promotion(spec):
        wanted.append("confirmPromotion")
    return tuple(kind for kind in wanted if hooks(spec, kind))


def blocking(spec: ModelExperimentSpec, observations: Observations, kind: str) -> str | None:
    """Why the `kind` gates do not (yet) let the experiment on, or None when every one answered 2xx."""
    answers = {result.name: result for result in observations.gates if result.type == kind}
    problems = []
    for hook in hooks(spec, kind):
        answer = answers.get(hook.name)
        if answer is None:
            problems.append(f"{hook.name}: not called yet")
        elif not answer.passed:
            problems.append(f"{hook.name}: {answer.message}")
    return "; ".join(problems) or None


def wait_for_pre_start(tick: Tick, problem: str, generation: int | None) -> None:
    """Stay Pending, no traffic moved, saying which preStart gate stands in the way."""
    message = f"waiting for the preStart webhooks to answer 2xx before moving any traffic: {problem}"
    tick.update(
        phase="Pending",
        reason=PRE_START_REASON,
        message=message,
        strategy=tick.spec.strategy,
        observed_generation=generation,
    )
    tick.decide("hold", message)


def record(tick: Tick, observations: Observations) -> None:
    """Write every answer to status.webhooks, with an Event when a gate fails (again) or recovers."""
    if not observations.gates:
        return
    status, events = recorded(tick.status, observations.gates, tick.now)
    tick.update(webhooks=status.webhooks)
    tick.events.extend(events)


def recorded(
    status: ModelExperimentStatus, results: tuple[GateResult, ...], now: datetime
) -> tuple[ModelExperimentStatus, list[Event]]:
    """`status` with `results` in status.webhooks, and the Events they call for (also for onRollback answers)."""
    previous = {entry.name: entry for entry in status.webhooks}
    events = []
    for result in results:
        before = previous.get(result.name)
        if not result.passed:
            events.append(Event("Warning", "WebhookFailed", f"{result.type} webhook {result.name}: {result.message}"))
        elif before is None or before.phase == "Failed":
            events.append(Event("Normal", "WebhookPassed", f"{result.type} webhook {result.name}: {result.message}"))
    return status.model_copy(update={"webhooks": merged(status.webhooks, results, now)}), events


def merged(current: list[WebhookStatus], results: tuple[GateResult, ...], when: datetime) -> list[WebhookStatus]:
    """status.webhooks with `results` replacing the entries of the same name (order: first seen first)."""
    by_name = {entry.name: entry for entry in current}
    for result in results:
        by_name[result.name] = WebhookStatus(
            name=result.name,
            type=result.type,
            phase="Passed" if result.passed else "Failed",
            code=result.code,
            message=result.message[:512],
            attempts=result.attempts,
            last_called_at=when,
        )
    return list(by_name.values())

"""The engine's entry point: (spec, status, observations, now) -> Decision. Pure and deterministic.

Precedence within one call: terminal phases are absorbing (a manual action there is ignored with an
Event) -> start (no phase yet, Pending or Invalid), only once one complete read of the metrics succeeded,
else Pending with reason MetricsUnavailable and no traffic moved (see readiness), and every preStart
webhook answered 2xx, else Pending with reason AwaitingPreStart (see gates); before the start a manual
rollback ends the experiment and any other manual action is ignored with an Event -> manual action -> spec
change (new generation) -> one tick of analysis. A SetTraffic action is emitted only when the weights or the
mirror changed; the controller re-applies `expected_traffic` itself to repair drift.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import ModelExperimentStatus
from mlrollouts.engine import conditions, gates, lifecycle, readiness, running
from mlrollouts.engine.guardrails import GuardrailCheck
from mlrollouts.engine.strategies import abtest, bandit, canary, shadow
from mlrollouts.engine.tick import Tick
from mlrollouts.engine.traffic import expected_traffic
from mlrollouts.engine.types import Action, CallWebhooks, Decision, Event, ManualAction, Observations

STRATEGIES: dict[str, Callable[[Tick, GuardrailCheck], None]] = {
    "canary": canary.step,
    "abTest": abtest.step,
    "shadow": shadow.step,
    "bandit": bandit.step,
}
NOT_STARTED = frozenset({None, "Pending", "Invalid"})


def decide(
    spec: ModelExperimentSpec,
    status: ModelExperimentStatus,
    observations: Observations,
    now: datetime,
    *,
    generation: int | None = None,
    manual: ManualAction | None = None,
) -> Decision:
    if status.is_terminal:
        if manual is None:
            return Decision(status=status)
        message = f"{manual} ignored: the experiment already ended ({status.phase})"
        return Decision(status=status, events=(Event("Normal", "ManualActionIgnored", message),))
    tick = Tick.begin(spec, status, now)
    gates.record(tick, observations)
    if status.phase in NOT_STARTED and manual == "rollback":
        lifecycle.rollback_before_start(tick, generation)
    elif status.phase in NOT_STARTED:
        if manual is not None:
            lifecycle.ignore_before_start(tick, manual)
        problem = readiness.first_read_problem(tick, observations)
        held = gates.blocking(spec, observations, "preStart") if problem is None else None
        if problem is not None:
            readiness.wait_for_metrics(tick, problem, generation)
        elif held is not None:
            gates.wait_for_pre_start(tick, held, generation)
        else:
            lifecycle.start(tick, generation)
    elif manual is not None:
        lifecycle.apply_manual(tick, manual)
    elif generation is not None and status.observed_generation is not None and generation != status.observed_generation:
        lifecycle.spec_changed(tick, generation)
    else:
        if generation is not None and status.observed_generation is None:
            tick.update(observed_generation=generation)
        running.analyse(tick, observations, STRATEGIES[spec.strategy])
    return _finish(tick)


def _finish(tick: Tick) -> Decision:
    tick.update(conditions=conditions.refresh(tick.status, tick.now, tick.metrics_message))
    before, after = tick.before, tick.status
    actions: tuple[Action, ...] = ()
    if before.weights != after.weights or before.mirror_percent != after.mirror_percent:
        actions = (expected_traffic(after, tick.spec),)
    if after.phase == "RolledBack" and before.phase != "RolledBack" and gates.hooks(tick.spec, "onRollback"):
        actions += (CallWebhooks("onRollback"),)
    return Decision(status=after, actions=actions, events=tuple(tick.events))

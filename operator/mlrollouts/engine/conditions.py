"""Kubernetes-style conditions derived from the final status of a tick.

lastTransitionTime moves only when a condition's status flips, as kubectl users expect.
"""

from __future__ import annotations

from datetime import datetime

from mlrollouts.api.status import TERMINAL_PHASES, Condition, ModelExperimentStatus
from mlrollouts.engine.tick import RUNNING_PHASES

NOT_READY_PHASES = frozenset({"Pending", "Paused", "RolledBack", "Invalid"})


def _wanted(status: ModelExperimentStatus, metrics_message: str | None) -> list[tuple[str, str, str, str]]:
    phase, reason, message = status.phase or "Pending", status.reason or status.phase or "Pending", status.message or ""
    failing = [g for g in status.guardrails if not g.healthy]
    analysis = status.analysis
    srm_paused = phase == "Paused" and status.reason == "SampleRatioMismatch"
    if srm_paused:
        srm = ("False", "SampleRatioMismatch", message)
    elif analysis is not None and analysis.srm_p_value is not None:
        srm = ("True", "SampleRatioHealthy", f"srm p = {analysis.srm_p_value:.3g}")
    else:
        srm = ("Unknown", "NotEnoughSamples", "not checked yet (too few trials, or not applicable to the strategy)")
    return [
        ("Ready", "False" if phase in NOT_READY_PHASES else "True", reason, message),
        ("Progressing", "True" if phase in RUNNING_PHASES else "False", reason, message),
        (
            "GuardrailsHealthy",
            "False" if failing else "True",
            "GuardrailFailed" if failing else "GuardrailsHealthy",
            "; ".join(f"{g.name}: {g.value} ({g.threshold})" for g in failing),
        ),
        (
            "MetricsAvailable",
            "False" if status.metrics_failures else "True",
            "MetricsUnavailable" if status.metrics_failures else "MetricsAvailable",
            metrics_message or "",
        ),
        ("SampleRatioHealthy", *srm),
        ("Completed", "True" if phase in TERMINAL_PHASES else "False", reason, message),
    ]


def refresh(status: ModelExperimentStatus, now: datetime, metrics_message: str | None) -> list[Condition]:
    previous = {c.type: c for c in status.conditions}
    conditions = []
    for kind, state, reason, message in _wanted(status, metrics_message):
        old = previous.get(kind)
        if kind == "MetricsAvailable" and state == "False" and not message and old is not None:
            message = old.message
        changed = old is None or old.status != state
        conditions.append(
            Condition(
                type=kind,
                status=state,
                reason=reason,
                message=message,
                last_transition_time=now if changed else old.last_transition_time,
                observed_generation=status.observed_generation,
            )
        )
    return conditions

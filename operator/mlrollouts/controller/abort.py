"""What deleting a running experiment announces: the same as a rollback (docs/notifications.md).

A user expects an aborted canary to fire its rollback hook and notification, as a rollback does. The
finalizer restores the champion first (handlers.give_traffic_back), then this module calls the `onRollback`
gates and queues the notifications for a RolledBack phase with reason `Deleted`. Best effort and bounded: the
gates get ABORT_HOOKS_SECONDS in all, their answers become Events (there is no status left to record them in),
and notifications are only queued. Nothing here raises: a receiver can never hold the finalizer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from mlrollouts.api import ModelExperiment
from mlrollouts.api.status import ModelExperimentStatus
from mlrollouts.controller.ports import Runtime
from mlrollouts.engine import gates
from mlrollouts.engine.traffic import champion_only
from mlrollouts.engine.types import Event

log = logging.getLogger(__name__)

ABORT_HOOKS_SECONDS = 30.0
"""Longest the finalizer waits for the onRollback gates of a deleted experiment, all of them together."""
REASON = "Deleted"


def aborted_status(experiment: ModelExperiment, now: datetime) -> ModelExperimentStatus:
    """The status a rollback would have left: RolledBack, champion 100 %, no mirror; reason Deleted."""
    status = experiment.status
    message = f"deleted while {status.phase}: {experiment.spec.champion.name} restored to 100 %"
    analysis = status.analysis.model_copy(update={"decision": "rollback"}) if status.analysis else None
    return status.model_copy(
        update={
            "phase": "RolledBack",
            "reason": REASON,
            "message": message,
            "weights": champion_only(experiment.spec),
            "mirror_percent": None,
            "finished_at": now,
            "analysis": analysis,
        }
    )


async def announce(body: Any, experiment: ModelExperiment, runtime: Runtime) -> None:
    """onRollback gates (bounded) and notifications, as for a rollback; failures are Events, never raised."""
    now = datetime.now(UTC)
    aborted = experiment.model_copy(update={"status": aborted_status(experiment, now)})
    events: list[Event] = []
    if any(hook.type == "onRollback" for hook in experiment.spec.webhooks or []):
        try:
            calls = runtime.call_webhooks(aborted, "onRollback", now, experiment.status.phase)
            results = await asyncio.wait_for(calls, ABORT_HOOKS_SECONDS)
            events = gates.recorded(aborted.status, results, now)[1]
        except TimeoutError:
            events = [
                Event("Warning", "WebhookFailed", f"onRollback webhooks: no answer within {ABORT_HOOKS_SECONDS:g}s")
            ]
        except Exception as error:  # best effort: the champion already has its traffic back
            log.exception("onRollback webhooks of a deleted experiment failed")
            events = [Event("Warning", "WebhookFailed", f"onRollback webhooks: {type(error).__name__}")]
    for event in events:
        await runtime.events.post(body, event)
    try:
        runtime.notifier.submit(aborted, experiment.status, now)
    except Exception:
        log.exception("notifications of a deleted experiment could not be queued")

"""The status a tick writes when it cannot do its work: every experiment always shows a phase and a reason.

Written raw (a dict), not through the status model: the spec it would describe may not even parse.
- Invalid: the spec is wrong; phase Invalid, the problems as the message.
- Not ready (routing object missing, API error, an unexpected failure): an experiment that has not started
  yet becomes Pending with that reason; a running one keeps its phase, weights and history (nothing the
  failed tick decided was applied) and only its Ready condition turns False with the reason. The next
  successful tick recomputes the conditions.
Ready's lastTransitionTime moves only when its status or message changes, as kubectl users expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

NOT_STARTED = (None, "Pending", "Invalid")


def _previous(body: Mapping[str, Any]) -> dict[str, Any]:
    status = dict(body.get("status") or {})
    status.pop("kopf", None)
    return status


def _generation(body: Mapping[str, Any]) -> int | None:
    return (body.get("metadata") or {}).get("generation")


def _with_ready_false(
    status: dict[str, Any], reason: str, message: str, now: datetime, generation: int | None
) -> list[dict[str, Any]]:
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
    previous = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    unchanged = previous.get("status") == "False" and previous.get("message") == message
    conditions.append(
        {
            "type": "Ready",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": previous.get("lastTransitionTime") if unchanged else now.isoformat(),
            **({"observedGeneration": generation} if generation is not None else {}),
        }
    )
    return conditions


def invalid_status(body: Mapping[str, Any], message: str, now: datetime, reason: str) -> dict[str, Any]:
    """Phase Invalid with the problems as the message; everything else (weights, samples) kept untouched."""
    status = _previous(body)
    status.update(
        phase="Invalid",
        reason=reason,
        message=message,
        conditions=_with_ready_false(status, reason, message, now, _generation(body)),
        observedGeneration=_generation(body),
    )
    return status


def not_ready_status(body: Mapping[str, Any], message: str, now: datetime, reason: str) -> dict[str, Any]:
    """Pending with the reason before the start; a running experiment keeps its phase, Ready turns False."""
    status = _previous(body)
    if status.get("phase") in NOT_STARTED:
        status.update(
            phase="Pending",
            reason=reason,
            message=message,
            observedGeneration=_generation(body),
        )
    status["conditions"] = _with_ready_false(status, reason, message, now, _generation(body))
    return status

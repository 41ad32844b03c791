"""Phase transitions shared by every strategy. Rollback always means champion 100 % and no mirror."""

from __future__ import annotations

from mlrollouts.engine.tick import Tick, running_phase
from mlrollouts.engine.traffic import champion_only, only

WARNING_PAUSES = frozenset({"MetricsUnavailable", "SampleRatioMismatch"})


def _finish(tick: Tick, phase: str, reason: str, message: str, weights: dict[str, int], winner: str | None) -> None:
    previous = tick.status.phase
    tick.set_weights(weights)
    tick.update(phase=phase, reason=reason, message=message, mirror_percent=None, finished_at=tick.now, winner=winner)
    tick.record(phase[0].lower() + phase[1:], previous, phase, message)


def rollback(tick: Tick, reason: str, message: str, *, winner: str | None = None) -> None:
    _finish(tick, "RolledBack", reason, message, champion_only(tick.spec), winner)
    tick.decide("rollback", message)
    tick.event("Warning", "RolledBack", message)


def promote(tick: Tick, winner: str, message: str, *, reason: str = "Promoted") -> None:
    _finish(tick, "Promoted", reason, message, only(tick.spec, winner), winner)
    tick.decide("promote", message)
    tick.event("Normal", "Promoted", message)


def promote_or_wait(tick: Tick, winner: str, evidence: str, promoted: str) -> None:
    """Promote `winner`, unless a person (autoPromote false) or a confirmPromotion webhook must agree first.

    Waiting is phase Paused, reason ReadyToPromote, traffic kept: sending 100 % to an unapproved challenger
    would defeat the purpose of asking. engine.gates promotes once the webhooks answer 2xx.
    """
    if not tick.spec.auto_promote:
        pause(tick, "ReadyToPromote", f"{evidence}: waiting for a manual promote (autoPromote off)")
    elif any(hook.type == "confirmPromotion" for hook in tick.spec.webhooks or []):
        pause(tick, "ReadyToPromote", f"{evidence}: waiting for the confirmPromotion webhooks to answer 2xx")
    else:
        promote(tick, winner, promoted)


def inconclusive(tick: Tick, message: str) -> None:
    _finish(tick, "Inconclusive", "Inconclusive", message, champion_only(tick.spec), None)
    tick.decide("conclude", message)
    tick.event("Warning", "Inconclusive", message)


def pause(tick: Tick, reason: str, message: str, *, kind: str = "pause") -> None:
    """Stop deciding; traffic stays where it is unless the caller moved it."""
    previous = tick.status.phase
    if previous != "Paused" or tick.status.reason != reason:
        tick.record("pause", previous, "Paused", message)
        tick.event("Warning" if reason in WARNING_PAUSES else "Normal", reason, message)
    tick.update(phase="Paused", reason=reason, message=message)
    tick.decide(kind, message)


def resume(tick: Tick, reason: str, message: str) -> None:
    """Back to the running phase with a fresh step window, so a pause never cuts a step short."""
    phase = running_phase(tick.spec)
    tick.record("resume", tick.status.phase, phase, message)
    tick.event("Normal", reason, message)
    mirror = tick.spec.shadow.mirror_percent if tick.spec.strategy == "shadow" and tick.spec.shadow else None
    tick.set_weights(dict(tick.status.weights))
    # A resume is someone's word that what paused it is fixed: sample-ratio evidence starts afresh.
    tick.update(
        phase=phase,
        reason=reason,
        message=message,
        metrics_failures=0,
        mirror_percent=mirror,
        srm_log_evidence=0.0,
    )
    tick.decide("continue", message)

"""`status --watch`: follow one experiment until it reaches a verdict, and say which with the exit code.

A CI job or a deploy script waits on an experiment the way it waits on `kubectl rollout status`:

- 0: the challenger may ship: Promoted, or Paused waiting for a human who already has a winner
  (ReadyToPromote) or a healthy shadow (ShadowPassed);
- 1: it may not: RolledBack, Invalid or Failed;
- 3: Inconclusive (no difference established, the champion kept: not a failure, not a winner);
- 124: --timeout passed first (the code `timeout(1)` uses).

Other pauses (SampleRatioMismatch, a manual pause) wait for a person and are not verdicts: the watch goes on.
A stale verdict is not trusted: an Invalid status from an older generation waits for the operator to judge
the new spec. Reads that fail for a moment (the API server restarting) are retried until the timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlrollouts.cli.cluster import Cluster, ClusterError, ExperimentNotFound

SHIP, NO_SHIP, INCONCLUSIVE, TIMED_OUT = 0, 1, 3, 124
_SHIP_REASONS = frozenset({"ReadyToPromote", "ShadowPassed"})
_NO_SHIP_PHASES = frozenset({"RolledBack", "Invalid", "Failed"})


def verdict(obj: dict[str, Any]) -> int | None:
    """The exit code this object's status stands for, or None while the experiment is still undecided."""
    status = obj.get("status") or {}
    phase, reason = status.get("phase"), status.get("reason")
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if phase == "Invalid" and generation is not None and observed is not None and observed < generation:
        return None  # judged an older spec: the operator has not looked at the new one yet
    if phase == "Promoted" or (phase == "Paused" and reason in _SHIP_REASONS):
        return SHIP
    if phase in _NO_SHIP_PHASES or reason == "Failed":
        return NO_SHIP
    if phase == "Inconclusive":
        return INCONCLUSIVE
    return None


def progress_line(obj: dict[str, Any]) -> str:
    """One line per change: phase, reason, the readable weights, the message."""
    status = obj.get("status") or {}
    parts = [
        status.get("phase") or "Pending",
        status.get("reason") or "",
        status.get("weightSummary") or "",
        status.get("message") or ("no status yet: is the operator running?" if not status else ""),
    ]
    return "  ".join(part for part in parts if part)


def watch(
    cluster: Cluster,
    namespace: str,
    name: str,
    *,
    timeout: float | None,
    interval: float,
    on_change: Callable[[dict[str, Any]], None],
    on_retry: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, dict[str, Any] | None]:
    """Poll until a verdict (its exit code and the object) or the timeout (124 and the last object seen)."""
    deadline = None if timeout is None else clock() + timeout
    last: dict[str, Any] | None = None
    shown: str | None = None
    while True:
        try:
            last = cluster.get(namespace, name)
        except ExperimentNotFound:
            raise
        except ClusterError as error:  # transient: keep trying until the deadline
            on_retry(error.format_message())
        else:
            line = progress_line(last)
            if line != shown:
                shown = line
                on_change(last)
            code = verdict(last)
            if code is not None:
                return code, last
        if deadline is not None and clock() >= deadline:
            return TIMED_OUT, last
        pause = interval if deadline is None else max(0.0, min(interval, deadline - clock()))
        sleep(pause)

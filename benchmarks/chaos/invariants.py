"""The invariants a fault must not break: each step recorded once and in order, the route equal to
status.weights once settled, and deletion handing all traffic back to the champion.

Each check returns the violations it found as sentences (empty: the invariant held).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import kubernetes
from stack import GROUP, PLURAL, VERSION

from benchmarks.chaos.faults import CHALLENGER, CHAMPION, ChaosStack, normalised

TERMINAL = ("Promoted", "RolledBack")
OUTCOME_ROUTES = {"Promoted": {CHAMPION: 0, CHALLENGER: 100}, "RolledBack": {CHAMPION: 100, CHALLENGER: 0}}
ADVANCE = re.compile(rf"{CHALLENGER} (\d+)%")


def history_violations(status: dict[str, Any], steps: list[int]) -> list[str]:
    """Every step recorded once, none skipped, and status.weights at the step the history has reached."""
    history = status.get("history") or []
    actions = [entry.get("action") for entry in history]
    problems = []
    if actions.count("start") > 1:
        problems.append(f"'start' recorded {actions.count('start')} times")
    reached = [int(m.group(1)) for e in history if e.get("action") == "advance" and (m := ADVANCE.search(e["to"]))]
    expected = steps[1 : 1 + len(reached)]
    if reached != expected:
        problems.append(f"challenger steps recorded {reached}, expected {expected}: a step doubled or skipped")
    ends = [action for action in actions if action in ("promoted", "rolledBack")]
    if len(ends) > 1:
        problems.append(f"end recorded {len(ends)} times: {ends}")
    phase, weight = status.get("phase"), (status.get("weights") or {}).get(CHALLENGER)
    current = steps[len(reached)] if len(reached) < len(steps) else None
    if phase == "Progressing" and "start" in actions and not problems and weight != current:
        problems.append(f"status.weights gives {CHALLENGER} {weight}%, history says step {current}%")
    if phase == "Promoted" and reached != steps[1:-1]:
        problems.append(f"promoted after steps {reached}, expected {steps[1:-1]}")
    return problems


def route_violations(chaos: ChaosStack, name: str, recovered_at: datetime, timeout: float = 45.0) -> list[str]:
    """After a tick that began after the fault ended, the route settles on status.weights (a terminal
    experiment no longer ticks: its route must simply match)."""
    deadline = time.monotonic() + timeout
    ticked, seen = False, "nothing read"
    while time.monotonic() < deadline:
        try:
            before = chaos.stack.status(name)
            last = before.get("lastAnalysisAt")
            ticked = ticked or before.get("phase") in TERMINAL or bool(last and _at(last) > recovered_at)
            if ticked:
                route = chaos.route_weights()
                after = chaos.stack.status(name)
                if before.get("weights") == after.get("weights") and route == normalised(after.get("weights") or {}):
                    return []
                seen = f"route {route}, status.weights {after.get('weights')}"
        except kubernetes.client.ApiException as error:
            seen = f"read failed: HTTP {error.status}"
        time.sleep(0.2)
    if not ticked:
        return [f"no tick within {timeout:.0f}s after the fault ended ({seen})"]
    return [f"route never matched status.weights within {timeout:.0f}s: {seen}"]


def deletion_violations(chaos: ChaosStack, name: str, kill_operator: bool = False, timeout: float = 45.0) -> list[str]:
    """The finalizer lets the object go and the route is the champion at 100 % if the experiment was running,
    the outcome's split if it had finished (deletion leaves a finished experiment's route alone).
    `kill_operator`: SIGKILL the operator right after the delete request and start it again."""
    chaos.stack.objects.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    if kill_operator:
        chaos.stack.operator.kill()
        time.sleep(0.5)
        chaos.stack.operator.start()
    deadline, phase = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            phase = chaos.stack.status(name).get("phase")
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                break
        time.sleep(0.1)
    else:
        return [f"experiment still present {timeout:.0f}s after deletion (finalizer never released)"]
    expected = OUTCOME_ROUTES.get(phase or "", {CHAMPION: 100, CHALLENGER: 0})
    route = chaos.route_weights()
    if route != expected:
        return [f"deleted in phase {phase}, the route is {route}, expected {expected}"]
    return []


def _at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))

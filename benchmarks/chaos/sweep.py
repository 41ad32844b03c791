"""The sweep: canaries one after another on one chaos stack, a few fault points in each, invariants after
every point, the canary's end and its deletion checked too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import kubernetes
from stack import GROUP, PLURAL, VERSION, canary_manifest, virtual_service_manifest

from benchmarks.chaos.faults import CHALLENGER, CHAMPION, ChaosStack, Fault
from benchmarks.chaos.invariants import (
    OUTCOME_ROUTES,
    TERMINAL,
    deletion_violations,
    history_violations,
    route_violations,
)

STEPS = [10, 20, 35, 50, 70, 100]
# A canary to be deleted while running gets more steps, so it is still running when its last point is done.
LONG_STEPS = [5, 10, 20, 30, 40, 50, 60, 70, 85, 100]
ISTIO = ("networking.istio.io", "v1")
Ending = Literal["run to end", "delete running", "delete under kill"]
ENDINGS: tuple[Ending, ...] = ("run to end", "delete running", "run to end", "delete under kill")
Progress = Callable[[str], None]


@dataclass
class PointResult:
    fault: Fault
    canary: str
    caught_route_write: bool
    violations: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.fault.kind

    @property
    def detail(self) -> str:
        return self.fault.describe() + (" (caught: route ahead of status)" if self.caught_route_write else "")


@dataclass
class CanaryResult:
    name: str
    outcome: str
    violations: list[str] = field(default_factory=list)


@dataclass
class SweepResult:
    points: list[PointResult] = field(default_factory=list)
    canaries: list[CanaryResult] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(len(p.violations) for p in self.points) + sum(len(c.violations) for c in self.canaries)


def sweep(chaos: ChaosStack, faults: list[Fault], progress: Progress, per_canary: int = 3) -> SweepResult:
    """Run every fault, `per_canary` to a canary; a fault planned after its canary ended moves to the next."""
    result, queue, index, idle = SweepResult(), list(faults), 0, 0
    while queue:
        index += 1
        batch, queue = queue[:per_canary], queue[per_canary:]
        ending = ENDINGS[(index - 1) % len(ENDINGS)]
        steps = STEPS if ending == "run to end" else LONG_STEPS
        unused = run_canary(chaos, f"chaos-{index:03d}", batch, result, progress, len(faults), ending, steps)
        idle = idle + 1 if len(unused) == len(batch) else 0
        if idle == 5:
            raise RuntimeError("five canaries in a row ended before their first fault point; see the progress above")
        queue = unused + queue
    return result


def run_canary(
    chaos: ChaosStack,
    name: str,
    faults: list[Fault],
    result: SweepResult,
    progress: Progress,
    total: int,
    ending: Ending,
    steps: list[int] = STEPS,
) -> list[Fault]:
    """One canary with up to len(faults) fault points, then ended by `finish`; returns the faults it had no
    time for (planned after the canary had already ended)."""
    stack = chaos.stack
    route = virtual_service_manifest("churn", CHAMPION, CHALLENGER)
    stack.objects.create_namespaced_custom_object(*ISTIO, "default", "virtualservices", route)
    stack.exporter.control(CHAMPION, rate=200, success=0.72, latency=0.05, error_rate=0.0, silent=False)
    stack.exporter.control(CHALLENGER, rate=0, success=0.78, latency=0.05, error_rate=0.0, silent=False)
    stack.create(canary_manifest(name, chaos.prometheus_address, steps=steps))
    stack.follow_traffic(name)
    remaining = list(faults)
    try:
        stack.wait_for(name, lambda s: s.get("phase") == "Progressing", 60, "the canary's first step")
        while remaining:
            fault = remaining[0]
            time.sleep(fault.delay_s)
            if stack.status(name).get("phase") in TERMINAL:
                break
            remaining.pop(0)
            recovered_at, caught = chaos.inject(fault, name)
            point = PointResult(fault, name, caught)
            point.violations += route_violations(chaos, name, recovered_at)
            status = stack.status(name)
            point.violations += history_violations(status, steps)
            result.points.append(point)
            verdict = "ok" if not point.violations else "VIOLATION " + "; ".join(point.violations)
            counter = f"point {len(result.points)}/{total} [{name}]"
            progress(f"{counter} {point.detail}: phase {status.get('phase')}, {verdict}")
        result.canaries.append(finish(chaos, name, ending, progress, steps))
    finally:
        if stack.follower:
            stack.follower.stopping.set()
            stack.follower.join(2)
            stack.follower = None
        with contextlib.suppress(kubernetes.client.ApiException):
            stack.objects.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
        with contextlib.suppress(kubernetes.client.ApiException):
            stack.objects.delete_namespaced_custom_object(*ISTIO, "default", "virtualservices", "churn")
    return remaining


def finish(chaos: ChaosStack, name: str, ending: Ending, progress: Progress, steps: list[int]) -> CanaryResult:
    """End the canary and check it. Run to its end: the whole history and the outcome's route, which deleting
    a finished experiment keeps. Deleted while running (the operator SIGKILLed right after the delete request,
    before its finalizer could act, for "delete under kill"): the champion gets 100 % back."""
    status = chaos.stack.status(name)
    canary = CanaryResult(name, "unfinished")
    if ending == "run to end" or status.get("phase") in TERMINAL:
        try:
            status = chaos.stack.wait_for(name, lambda s: s.get("phase") in TERMINAL, 120, "Promoted or RolledBack")
        except AssertionError as error:
            canary.violations.append(str(error).splitlines()[0])
        canary.outcome = status.get("phase") or "unfinished"
    else:
        canary.outcome = f"{ending} ({status.get('phase')})"
    canary.violations += history_violations(status, steps)
    if canary.outcome in OUTCOME_ROUTES and chaos.route_weights() != OUTCOME_ROUTES[canary.outcome]:
        canary.violations.append(f"{canary.outcome} but the route is {chaos.route_weights()}")
    canary.violations += deletion_violations(chaos, name, kill_operator=ending == "delete under kill")
    verdict = "ok" if not canary.violations else "VIOLATION " + "; ".join(canary.violations)
    progress(f"canary {name}: {canary.outcome}; deletion checked: {verdict}")
    return canary

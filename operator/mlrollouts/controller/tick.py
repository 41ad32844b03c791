"""One reconcile tick (DESIGN §3): read → metrics → engine → routing → one status write + Events.

Thin glue on purpose: every decision is the engine's. This module only moves data between the API server,
Prometheus, the router and the engine, in the order that keeps a restart safe: an action is applied before
the status that records it, and applying it twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mlrollouts.api import (
    ModelExperiment,
    ModelExperimentStatus,
    RoutingStatus,
    SpecError,
)
from mlrollouts.api.errors import SpecProblem
from mlrollouts.controller import routing_record
from mlrollouts.controller.not_ready import invalid_status, not_ready_status
from mlrollouts.controller.reading import ACTION_ANNOTATION, MANUAL_ACTIONS, load, manual_action, remember_status
from mlrollouts.controller.templates import no_templates
from mlrollouts.engine import decide, expected_traffic, gates
from mlrollouts.engine.types import Action, CallWebhooks, Event, GateResult, Observations, SetTraffic
from mlrollouts.metrics.base import MetricsProvider
from mlrollouts.metrics.secrets import SecretMissing
from mlrollouts.metrics.template_refs import queries_fingerprint, template_refs
from mlrollouts.routing.base import AppliedTraffic, RoutingError, TrafficRouter
from mlrollouts.routing.kube import ApiRequestFailed, ObjectConflict, is_transient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickPorts:
    """Everything a tick talks to, injected so tests and the benchmark can count or replace it."""

    metrics_for: Callable[[ModelExperiment], Awaitable[MetricsProvider]]
    router_for: Callable[[ModelExperiment], TrafficRouter]
    write_status: Callable[[str, str, dict[str, Any], str | None], Awaitable[str | None]]
    """(namespace, name, status, resourceVersion read): refused with ObjectConflict if the object changed since;
    returns the resourceVersion the write produced (None if unknown)."""
    clear_annotation: Callable[[str, str, str], Awaitable[None]]
    post_event: Callable[[Event], Awaitable[None]]
    """Posts (or, for a repeat, aggregates) a Kubernetes Event on the experiment; never raises."""
    conflict_with: Callable[[ModelExperiment], str | None]
    """Name of an older live experiment managing the same routing object, if any."""
    hook_problems: Callable[[ModelExperiment], list[SpecProblem]] | None = None
    """Why the platform does not allow the experiment's webhooks or notification Secrets (hooks.policy)."""
    call_webhooks: Callable[..., Awaitable[tuple[GateResult, ...]]] | None = None
    """(experiment, type, now[, previous_phase]): calls every spec.webhooks gate of one type (hooks.gates);
    None: gates are never called (they hold)."""
    notify: Callable[[ModelExperiment, ModelExperimentStatus, datetime], Any] | None = None
    """Queues notifications for a notable change (hooks.notifier); must not wait for any receiver."""
    resolve_templates: Callable[[ModelExperiment], Awaitable[ModelExperiment]] = no_templates
    """The experiment with its templateRefs replaced by the templates' queries (controller/templates.py);
    SpecError when a template is missing or its arguments are wrong."""
    retry_in: Callable[[], float] | None = None
    """Seconds until a failed tick is tried again (the controller's backoff), said in the not-ready message."""
    status_unchanged: Callable[[str, str, str | None], None] | None = None
    """(namespace, name, resourceVersion read): the tick's status was the one stored, so nothing was written and
    the object is still at that version."""


@dataclass(frozen=True)
class TickResult:
    experiment: ModelExperiment | None
    status: dict[str, Any]
    decision: str | None = None
    transitioned: bool = False


async def reconcile(body: Mapping[str, Any], now: datetime, ports: TickPorts) -> TickResult:
    """One tick; a tick that fails still leaves a phase and a Ready=False reason in status, then re-raises."""
    try:
        return await _reconcile(body, now, ports)
    except ObjectConflict:
        raise  # someone else wrote first: the next tick starts from a fresh read
    except RoutingError as error:
        reason, message = _routing_failure(error)
        await _mark_not_ready(body, now, reason, message, ports)
        raise
    except SecretMissing as error:  # waits like a Pod for its Secret: Pending / Ready=False, not Invalid
        await _mark_not_ready(body, now, error.reason, str(error), ports)
        raise
    except Exception as error:
        message = f"{type(error).__name__}: {str(error)[:300]} (the operator log has the traceback)"
        await _mark_not_ready(body, now, "ReconcileError", message, ports)
        raise


def _routing_failure(error: RoutingError) -> tuple[str, str]:
    """(reason, message) for a failed API or routing call. A 403 is RBAC, not an outage: reason Forbidden, and
    the API server's own words, which name the verb, resource, API group and namespace the operator lacks. A
    timeout, 429 or 5xx is the API server's trouble, not the route's (ApiUnavailable): a status write that timed
    out on a loaded server read RoutingFailed, even with the built-in gateway, which has no routing object."""
    if isinstance(error, ApiRequestFailed) and error.http_status == 403:
        return "Forbidden", (
            f"{error} (grant it to the operator's ServiceAccount: the chart's ClusterRole, or Role with "
            "watchNamespaces, has this rule unless it was edited)"
        )
    if is_transient(error):
        return "ApiUnavailable", str(error)
    return "RoutingFailed", str(error)


async def _reconcile(body: Mapping[str, Any], now: datetime, ports: TickPorts) -> TickResult:
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "")
    manual, raw_annotation = manual_action(body)
    if raw_annotation is not None and manual is None:
        await ports.post_event(
            Event(
                "Warning",
                "UnknownAction",
                f"annotation {ACTION_ANNOTATION}={raw_annotation!r} ignored: use one of {', '.join(MANUAL_ACTIONS)}",
            )
        )
        await ports.clear_annotation(namespace, name, ACTION_ANNOTATION)
        raise ObjectConflict("the action annotation was removed: the tick starts again from a fresh read")
    try:
        experiment = load(body)
    except SpecError as error:
        return await _mark_invalid(body, namespace, name, error.problems, now, "InvalidSpec", ports)
    if experiment.status.is_terminal:
        if manual is not None:
            await ports.post_event(
                Event("Normal", "ActionIgnored", f"{manual} ignored: phase is {experiment.status.phase}")
            )
            await ports.clear_annotation(namespace, name, ACTION_ANNOTATION)
        return TickResult(experiment, experiment.status.to_wire())
    templated = bool(template_refs(experiment.spec))
    try:  # before anything is decided: the engine only ever sees inline queries
        experiment = await ports.resolve_templates(experiment)
    except SpecError as error:
        return await _mark_invalid(body, namespace, name, error.problems, now, "InvalidSpec", ports)
    fingerprint = queries_fingerprint(experiment.spec) if templated else None
    moved = _routing_moved(body, experiment)
    if moved is not None:
        return await _mark_invalid(body, namespace, name, [moved], now, "RoutingChanged", ports, experiment)
    rival = ports.conflict_with(experiment)
    if rival is not None:
        target = experiment.spec.traffic.provider
        problem = SpecProblem(
            "spec.traffic",
            f"{target} object already managed by experiment {rival}: "
            "finish or delete that experiment first, or point this one at another object",
        )
        return await _mark_invalid(body, namespace, name, [problem], now, "Conflict", ports)

    problems = ports.hook_problems(experiment) if ports.hook_problems else []
    if problems:
        return await _mark_invalid(body, namespace, name, problems, now, "InvalidSpec", ports)
    try:
        observations = await _observe(experiment, now, ports)
    except SpecError as error:  # e.g. a Secret the platform does not allow
        return await _mark_invalid(body, namespace, name, error.problems, now, "InvalidSpec", ports)
    observations = await _ask_gates(experiment, observations, now, ports)
    decision = decide(
        experiment.spec,
        experiment.status,
        observations,
        now,
        generation=meta.get("generation"),
        manual=manual,
        queries_fingerprint=fingerprint,
    )
    router = ports.router_for(experiment)
    status = decision.status
    applied = await _apply_actions(decision.actions, router)
    if applied is None and status.phase not in (None, "Invalid") and status.weights:
        applied = await _repair_drift(expected_traffic(status, experiment.spec), router, ports)
    if applied is not None:
        status = status.model_copy(update={"routing": _routing_status(experiment, applied)})
    if status.weights:  # where the split is now: what deletion restores, whatever the spec says later
        status = status.model_copy(update={"routing": routing_record.with_record(status.routing, experiment.spec)})
    status, hook_events = await _call_webhooks(decision.actions, experiment, status, now, ports)
    wire = status.to_wire()
    written = await _write_status(body, wire, ports)
    remember_status(meta.get("uid"), written, status)
    if manual is not None:  # handled: removed right after the status that records it, before the Events
        await ports.clear_annotation(namespace, name, ACTION_ANNOTATION)
    for event in (*decision.events, *hook_events):
        await ports.post_event(event)
    updated = experiment.model_copy(update={"status": status})
    previous = experiment.status
    if ports.notify is not None:
        ports.notify(updated, previous, now)
    transitioned = (previous.phase, previous.step) != (status.phase, status.step)
    decided = status.analysis.decision if status.analysis else None
    return TickResult(updated, wire, decided, transitioned)


async def _write_status(body: Mapping[str, Any], status: dict[str, Any], ports: TickPorts) -> str | None:
    """The status write, guarded by the version read; none when `status` is the one stored (an Invalid experiment's
    recheck, a failure that repeats): the API server would find nothing changed after decoding, patching and
    validating the whole object, at 85 % of a changing write's CPU (benchmarks/apicost.py). A tick that
    analysed always writes, since lastAnalysisAt moved. Returns the version the object is now at."""
    meta = body.get("metadata") or {}
    namespace, name, version = meta.get("namespace", "default"), meta.get("name", ""), meta.get("resourceVersion")
    if version is not None and status == body.get("status"):
        if ports.status_unchanged is not None:
            ports.status_unchanged(namespace, name, version)
        return version
    return await ports.write_status(namespace, name, status, version)


async def _observe(experiment: ModelExperiment, now: datetime, ports: TickPorts) -> Observations:
    provider = await ports.metrics_for(experiment)
    return await provider.observe(experiment, now)


async def _ask_gates(
    experiment: ModelExperiment, observations: Observations, now: datetime, ports: TickPorts
) -> Observations:
    """The answers of the gates the engine needs this tick (engine.gates.due), added to the observations."""
    due = gates.due(experiment.spec, experiment.status)
    if not due or ports.call_webhooks is None:
        return observations
    answers = await asyncio.gather(*(ports.call_webhooks(experiment, kind, now) for kind in due))
    return replace(observations, gates=tuple(result for batch in answers for result in batch))


async def _apply_actions(actions: tuple[Action, ...], router: TrafficRouter) -> AppliedTraffic | None:
    applied = None
    for action in actions:
        if isinstance(action, SetTraffic):
            applied = await router.apply(action.split, action.mirror)
    return applied


async def _call_webhooks(
    actions: tuple[Action, ...],
    experiment: ModelExperiment,
    status: ModelExperimentStatus,
    now: datetime,
    ports: TickPorts,
) -> tuple[ModelExperimentStatus, list[Event]]:
    """onRollback: called once traffic is back on the champion; the answers are recorded, they decide nothing."""
    events: list[Event] = []
    for action in actions:
        if isinstance(action, CallWebhooks) and ports.call_webhooks is not None:
            current = experiment.model_copy(update={"status": status})
            results = await ports.call_webhooks(current, action.type, now, experiment.status.phase)
            status, more = gates.recorded(status, results, now)
            events.extend(more)
    return status, events


async def _repair_drift(expected: SetTraffic, router: TrafficRouter, ports: TickPorts) -> AppliedTraffic | None:
    """Someone edited the routing object by hand: put back what the experiment says, and say so.

    Re-applying is idempotent and writes only when the object differs, so `changed` is the drift test; comparing
    splits would not do, since a replica ratio only approximates the requested split.
    """
    applied = await router.apply(expected.split, expected.mirror)
    if not applied.changed:
        return None
    await ports.post_event(
        Event(
            "Warning",
            "TrafficDrift",
            f"the routing object no longer matched the experiment's split {dict(expected.split.weights)}: repaired",
        )
    )
    return applied


def _routing_status(experiment: ModelExperiment, applied: AppliedTraffic) -> RoutingStatus:
    return RoutingStatus(
        provider=experiment.spec.traffic.provider, applied_weights=dict(applied.split.weights), message=applied.message
    )


def _routing_moved(body: Mapping[str, Any], experiment: ModelExperiment) -> SpecProblem | None:
    """The spec would move an applied split off the routing it is on (routing_record.change)."""
    status = body.get("status") or {}
    record = routing_record.recorded(status) if routing_record.holds_split(status) else None
    moved = routing_record.change(record, experiment.spec, experiment.metadata.namespace) if record else None
    return SpecProblem(*moved) if moved else None


async def _mark_invalid(
    body: Mapping[str, Any],
    namespace: str,
    name: str,
    problems: list[SpecProblem],
    now: datetime,
    reason: str,
    ports: TickPorts,
    experiment: ModelExperiment | None = None,
) -> TickResult:
    """Invalid, nothing moved; a split already applied stays where it is, and the message says so."""
    previous = body.get("status") or {}
    message = "; ".join(str(p) for p in problems)
    held = routing_record.held_split(namespace, previous, experiment.spec.traffic if experiment else None)
    status = invalid_status(body, f"{message}. Traffic: {held}" if held else message, now, reason)
    if previous.get("message") != status["message"] or previous.get("phase") != "Invalid":
        await ports.post_event(Event("Warning", reason, status["message"]))
        log.warning("experiment=%s/%s invalid reason=%s message=%r", namespace, name, reason, status["message"])
    await _write_status(body, status, ports)
    return TickResult(None, status, None, previous.get("phase") != "Invalid")


async def _mark_not_ready(body: Mapping[str, Any], now: datetime, reason: str, message: str, ports: TickPorts) -> None:
    """Best effort: the API server may be what failed; the caller re-raises the original error either way,
    except when the status write lost a race (ObjectConflict): then the tick starts again from a fresh read at
    once. On a real API server kopf's own first writes (finalizer, annotations) race a new experiment's first
    tick, and a missing route went unreported for the whole 5 s retry interval."""
    meta = body.get("metadata") or {}
    await ports.post_event(Event("Warning", reason, message))  # without the delay: a repeat adds to its count
    if ports.retry_in is not None:  # when it is tried again: a user sees a wait with an end, not a stuck rollout
        message = f"{message}; retried in {ports.retry_in():g}s"
    try:
        await _write_status(body, not_ready_status(body, message, now, reason), ports)
    except ObjectConflict:
        raise
    except Exception as error:  # reporting must not hide the tick's own failure
        log.info(
            "experiment=%s/%s could not record %s in status: %s", meta.get("namespace"), meta.get("name"), reason, error
        )

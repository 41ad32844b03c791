"""kopf handlers: a few lines each. One analysis loop (daemon) per experiment, woken early by spec or
annotation changes; a finalizer that gives the champion its traffic back; an index for route conflicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from mlrollouts import GROUP, PLURAL, VERSION
from mlrollouts.api import TERMINAL_PHASES, ModelExperiment, SpecError
from mlrollouts.controller import abort, routing_record, telemetry
from mlrollouts.controller.ports import Runtime
from mlrollouts.controller.reading import ACTION_ANNOTATION, SPEC_CACHE_SIZE, forget_status, load, routing_claim
from mlrollouts.controller.retries import retry_cap
from mlrollouts.controller.sharding import ShardManager
from mlrollouts.controller.tick import reconcile
from mlrollouts.metrics.secrets import SecretMissing
from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.factory import routing_target
from mlrollouts.routing.kube import ObjectConflict

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, PLURAL)
MIN_INTERVAL_SECONDS = 0.2
SETTLE_SECONDS = 10.0
SETTLE_POLL_SECONDS = 0.5
STOP_BACKOFF_SECONDS = 5.0
"""How long kopf waits for a stopped loop to return by itself before it cancels it (and logs a warning)."""
KOPF_FINALIZER = kopf.OperatorSettings().persistence.finalizer  # the default, which run.configure keeps
DIFFBASE_ANNOTATION = f"{GROUP}/last-handled-configuration"  # run.configure's diff-base key


@kopf.index(*RESOURCE)
async def routing_claims(body: kopf.Body, **_: Any) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    """Which live experiment manages which routing object: (rank, creationTimestamp, name), the least wins.

    Rank "0" is an experiment whose split is on the object, "1" one that has not moved traffic there: an older
    experiment that starts (or is fixed) later cannot take a route another experiment's split is on.
    Async (a sync handler costs a worker-thread round trip) and cached by spec: it runs on every watch event,
    each of our own status writes included. An Invalid experiment that never moved traffic claims nothing: a
    broken spec must not block a valid one on the same object. One whose split is applied claims the object
    recorded in status.routing (where the split is, whatever the spec says now: routing_record) until it is
    fixed, finished or its deletion gave the champion back (the finalizer's restore runs after
    deletionTimestamp is set), so two experiments never fight over it.
    No claim is `{}`, never None: kopf keeps an object's previous index entry when the handler returns None, so
    a claim made at creation would outlive the experiment's end.
    """
    return claims_of(body)


def claims_of(body: Mapping[str, Any]) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    """routing_claims' answer for a raw body too (own_writes compares an event's with the last one kopf indexed)."""
    status = body.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES:
        return {}
    meta = body.get("metadata") or {}
    holds = routing_record.holds_split(status)
    if not holds and (status.get("phase") == "Invalid" or meta.get("deletionTimestamp")):
        return {}
    target = routing_record.recorded_target(meta.get("namespace") or "", status) if holds else None
    target = target or _claim(body)
    if target is None:
        return {}
    return {target: ("0" if holds else "1", meta.get("creationTimestamp") or "", meta.get("name") or "")}


_claims_by_generation: OrderedDict[tuple[str, int], tuple[str, str, str] | None] = OrderedDict()


def _claim(body: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """routing_claim by (uid, generation): the API server bumps the generation on every spec change and on no
    status write, so a status write's event costs a dict lookup instead of a JSON dump of the spec."""
    meta = body.get("metadata") or {}
    uid, generation = meta.get("uid"), meta.get("generation")
    if not uid or not isinstance(generation, int):
        return routing_claim(body)
    key = (uid, generation)
    if key not in _claims_by_generation:
        _claims_by_generation[key] = routing_claim(body)
        if len(_claims_by_generation) > SPEC_CACHE_SIZE:
            _claims_by_generation.popitem(last=False)
    return _claims_by_generation[key]


@kopf.on.update(*RESOURCE, field="spec")
@kopf.on.field(*RESOURCE, field=f"metadata.annotations.{ACTION_ANNOTATION}")
def wake_analysis(memo: kopf.Memo, **_: Any) -> None:
    """A spec edit or a manual action is handled now, not at the next interval."""
    wake = memo.get("wake")
    if wake is not None:
        wake.set()


@kopf.daemon(*RESOURCE, cancellation_backoff=STOP_BACKOFF_SECONDS, cancellation_timeout=5.0)
async def analysis_loop(
    body: kopf.Body,
    meta: kopf.Meta,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    routing_claims: kopf.Index,
    **_: Any,
) -> None:
    runtime: Runtime = memo.runtime
    namespace, name = meta.namespace, meta.name
    wake = memo.setdefault("wake", asyncio.Event())
    # Active-active: every replica runs this loop, only the holder of the experiment's shard ticks. The check is
    # here, not in a `when=` filter: kopf re-evaluates filters only on the experiment's own watch events, and a
    # shard changes hands without any.
    shards: ShardManager | None = memo.get("shards")
    try:
        await _kopf_settled(body, stopped)
        while not stopped:
            if shards is not None and not shards.owns(namespace, name):
                telemetry.forget_experiment(namespace, name)  # its series now come from the shard's holder
                await shards.wait_owned(namespace, name, stopped)
                continue
            with shards.writing_for(namespace, name) if shards else contextlib.nullcontext():
                interval = await _unless_stopped(_tick(runtime, namespace, name, routing_claims, body), stopped)
            if interval is None:
                return  # terminal: nothing left to decide
            wake.clear()
            await _sleep(stopped, wake, interval)
    finally:
        runtime.forget(namespace, name)
        forget_status(meta.uid)
        if shards is not None:
            shards.forget(namespace, name)


async def _kopf_settled(body: kopf.Body, stopped: kopf.DaemonStopped, limit: float = SETTLE_SECONDS) -> None:
    """A new experiment's first tick waits (at most `limit` seconds) for kopf's own first writes to it: its
    finalizer and its last-handled-configuration annotation. Otherwise they land between the tick's read and its
    status write, which the resourceVersion guard then refuses, and the tick (Prometheus queries included) runs
    again: with 3,000 experiments created at once most first status writes were refused that way."""
    deadline = time.monotonic() + limit
    while not stopped and time.monotonic() < deadline:
        meta = body.get("metadata") or {}
        if KOPF_FINALIZER in (meta.get("finalizers") or ()) and DIFFBASE_ANNOTATION in (meta.get("annotations") or {}):
            return
        await stopped.wait(SETTLE_POLL_SECONDS)


async def _unless_stopped(tick: Coroutine[Any, Any, float | None], stopped: kopf.DaemonStopped) -> float | None:
    """The tick's interval; None when the loop is stopped (shutdown, deletion) mid-tick: the tick is then
    cancelled here at once, as kopf used to cancel the whole loop, but the loop returns by itself, so kopf never
    has to cancel it. Not finishing the tick is as safe as a crash (an action is applied before the status that
    records it, and applying it twice is harmless), and on deletion it must not write after the finalizer's
    restore."""
    task = asyncio.ensure_future(tick)  # in this context: a shard's writing_for mark carries over
    stop = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
        return task.result() if task.done() else None
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))  # the tick's own CancelledError stays in its task


async def _tick(
    runtime: Runtime, namespace: str, name: str, claims: kopf.Index, live: kopf.Body | None = None
) -> float | None:
    """`live` is kopf's body, kept current by the watch: no GET when it shows the status this loop last wrote."""
    started = time.perf_counter()
    body: Mapping[str, Any] | None = live
    try:
        body = await runtime.read(namespace, name, live)
        if body is None:
            return None  # deleted: the finalizer does the rest
        ports = runtime.ports(body, lambda experiment: _rival(experiment, claims))
        result = await reconcile(body, datetime.now(UTC), ports)
    except ObjectConflict as error:
        telemetry.reconcile_duration.labels("conflict").observe(time.perf_counter() - started)
        log.info("experiment=%s/%s changed during the tick, re-reading: %s", namespace, name, error)
        return MIN_INTERVAL_SECONDS
    except (RoutingError, SecretMissing, OSError) as error:
        telemetry.reconcile_errors.labels(namespace, name).inc()
        telemetry.reconcile_duration.labels("error").observe(time.perf_counter() - started)
        delay = runtime.retries.delay(namespace, name, retry_cap(body))
        log.warning("experiment=%s/%s tick failed, retried in %gs: %s", namespace, name, delay, error)
        return delay
    except Exception:  # a bug must cost one tick, not the experiment's analysis loop
        telemetry.reconcile_errors.labels(namespace, name).inc()
        telemetry.reconcile_duration.labels("error").observe(time.perf_counter() - started)
        delay = runtime.retries.delay(namespace, name, retry_cap(body))
        log.exception("experiment=%s/%s tick failed unexpectedly; retried in %gs", namespace, name, delay)
        return delay
    runtime.retries.succeeded(namespace, name)
    telemetry.reconcile_duration.labels("ok").observe(time.perf_counter() - started)
    if result.experiment is None:
        telemetry.record_invalid(namespace, name, (body.get("spec") or {}).get("strategy"))
        return runtime.invalid_recheck_interval
    telemetry.record_experiment(result.experiment, time.time() if result.transitioned else None)
    if result.decision:
        telemetry.decisions.labels(namespace, name, result.decision).inc()
    if result.experiment.status.is_terminal:
        return None
    return max(MIN_INTERVAL_SECONDS, result.experiment.spec.interval_seconds)


def _rival(experiment: Any, claims: kopf.Index) -> str | None:
    target = routing_target(experiment)
    if target is None or target not in claims:
        return None
    first = min(claims[target])
    return None if first[-1] == experiment.metadata.name else first[-1]


async def _sleep(stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@kopf.on.delete(*RESOURCE)
async def give_traffic_back(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Deleting a running experiment restores the champion to 100 % and removes mirrors, then fires what a
    rollback fires (onRollback gates, notifications: controller/abort.py); a finished one is left."""
    telemetry.forget_experiment(body.meta.namespace, body.meta.name)
    status = body.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES or not status.get("weights"):
        return
    shards: ShardManager | None = memo.get("shards")
    if shards is not None and not shards.owns(body.meta.namespace, body.meta.name):
        # the shard's holder restores traffic (the finalizer waits); a dead holder's successor does it
        raise kopf.TemporaryError("another replica holds this experiment's shard", delay=shards.config.retry_period)
    with shards.writing_for(body.meta.namespace, body.meta.name) if shards else contextlib.nullcontext():
        await _give_traffic_back(body, memo.runtime)


async def _give_traffic_back(body: kopf.Body, runtime: Runtime) -> None:
    """Champion 100 % on the routing the split was applied under (status.routing), not the one the spec names
    now: a spec broken or re-pointed mid-run must not leave the challenger holding traffic forever."""
    try:
        experiment: ModelExperiment | None = load(body)
    except SpecError:
        experiment = None
    namespace = body.meta.namespace or "default"
    record = routing_record.recorded(body.get("status") or {})
    if record is not None:
        router, champion = routing_record.router(namespace, record, runtime.objects), record.champion
    elif experiment is not None:  # recorded by an older operator: the spec is all there is
        router, champion = runtime.router_for(experiment), experiment.spec.champion.name
    else:
        raise kopf.PermanentError(
            "cannot restore traffic: the spec is invalid and status.routing records no routing (written by an "
            "older operator): set the champion's weight to 100 on the routing object by hand"
        )
    if router is not None:
        await router.restore()
    kopf.event(body, type="Normal", reason="TrafficRestored", message=f"{champion} restored to 100 %")
    if experiment is None:
        kopf.event(
            body,
            type="Warning",
            reason="RollbackNotAnnounced",
            message="the spec is invalid: its onRollback gates and notifications could not be read, none were sent",
        )
        return
    await abort.announce(body, experiment, runtime)

"""A transient API failure (a client timeout, a 504 or a 429 from a loaded API server) is retried with a growing
delay, never parked: the experiment shows a phase and a reason meanwhile, and starts once the API answers.

Issue 14's capacity run (3,000 experiments at 60 s on a loaded machine) left experiments in Pending/RoutingFailed:
their status writes had timed out. Each was retried every 5 s whatever the interval, twelve times as often as a
healthy experiment ticks, so the failures of an overloaded API server multiplied its load. Deterministic: the
failures are injected, no load is needed.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime
from typing import Any

from mlrollouts.api import ModelExperiment
from mlrollouts.controller import handlers
from mlrollouts.controller.ports import Runtime
from mlrollouts.engine import Observations, VariantObservation
from mlrollouts.localstack.replicas import experiment_manifest
from mlrollouts.metrics.base import MetricsProvider
from mlrollouts.routing.fake import FakeKubeObjects
from mlrollouts.routing.kube import ApiRequestFailed, ApiUnreachable

API, PLURAL = "mlrollouts.dev/v1alpha1", "modelexperiments"
INTERVAL = 60


class _CompleteRead:
    async def observe(self, experiment: ModelExperiment, now: datetime) -> Observations:
        samples = {"successes": 10.0, "trials": 20.0}
        champion = VariantObservation(samples, {})
        return Observations(time=now, variants={experiment.spec.champion.name: champion}, cumulative_counters=True)


class _LoadedApiServer(FakeKubeObjects):
    """Times out (or answers 504 to) the tick's status writes while `failing` > 0; the short not-ready report a
    failed tick writes goes through, as some requests do on a loaded server."""

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()
        self.error, self.failing = error, 0

    async def patch(self, api_version: str, plural: str, namespace: str, name: str, body: Any, *args: Any, **kw: Any):
        writes = body if isinstance(body, list) else []  # a status write is a JSON patch; Events are merge patches
        status = next((op.get("value") for op in writes if op.get("path") == "/status"), None)
        if status and status.get("phase") != "Pending" and self.failing > 0:
            self.failing -= 1
            raise self.error or AssertionError("no failure to inject")
        return await super().patch(api_version, plural, namespace, name, body, *args, **kw)


class _Runtime(Runtime):
    async def metrics_for(self, experiment: ModelExperiment) -> MetricsProvider:
        return _CompleteRead()  # type: ignore[return-value]


def _cluster(error: Exception) -> tuple[_LoadedApiServer, Runtime]:
    objects = _LoadedApiServer(error)
    manifest = copy.deepcopy(experiment_manifest("loaded", "http://prometheus.invalid:9090", INTERVAL))
    manifest["metadata"].update(uid="u-1", generation=1)
    objects.add(PLURAL, manifest)
    runtime = _Runtime(objects)  # type: ignore[arg-type]
    runtime.retries.jitter = lambda key: 0.0  # the nominal delays, unspread
    return objects, runtime


def _tick(runtime: Runtime, objects: FakeKubeObjects) -> float | None:
    live = objects.stored(API, PLURAL, "default", "loaded")
    return asyncio.run(handlers._tick(runtime, "default", "loaded", {}, live))


def _status(objects: FakeKubeObjects) -> dict[str, Any]:
    return objects.stored(API, PLURAL, "default", "loaded").get("status") or {}


def test_a_status_write_that_keeps_timing_out_is_retried_with_backoff_up_to_the_interval() -> None:
    path = f"/apis/{API}/namespaces/default/{PLURAL}/loaded/status"
    timeout = ApiUnreachable(f"PATCH {path}: Kubernetes API unreachable: TimeoutError")  # as KubeObjects raises it
    objects, runtime = _cluster(timeout)
    objects.failing = 6
    delays = []
    for _ in range(6):
        delays.append(_tick(runtime, objects))
        status = _status(objects)
        assert status["phase"] == "Pending", status  # a phase and a reason meanwhile, naming what failed
        assert status["reason"] == "ApiUnavailable" and "Kubernetes API unreachable" in status["message"]
        assert f"retried in {delays[-1]:g}s" in status["message"]
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]  # never slower than the experiment's own interval
    assert _tick(runtime, objects) == INTERVAL  # the API answers again: started, at its interval from now on
    assert _status(objects)["phase"] == "Progressing"

    objects.failing = 1  # a later failure starts the backoff again from the first delay
    assert _tick(runtime, objects) == 5.0


def test_a_504_from_the_api_server_is_retried_like_a_timeout_and_named_for_what_it_is() -> None:
    gateway_timeout = ApiRequestFailed("PATCH ModelExperiment default/loaded failed with HTTP 504: Timeout", 504)
    objects, runtime = _cluster(gateway_timeout)
    objects.failing = 2
    assert [_tick(runtime, objects), _tick(runtime, objects)] == [5.0, 10.0]
    assert _status(objects)["reason"] == "ApiUnavailable"
    assert _tick(runtime, objects) == INTERVAL and _status(objects)["phase"] == "Progressing"


def test_a_retry_delay_is_spread_so_failed_experiments_do_not_retry_in_step() -> None:
    """Thousands of experiments that failed together must not hit the recovering API server together again."""
    runtime = Runtime(FakeKubeObjects())
    delays = {runtime.retries.delay("default", f"e-{index}", INTERVAL) for index in range(50)}
    assert len(delays) > 10 and all(2.5 <= delay <= 5.0 for delay in delays)


class _GetsTimeOut(_LoadedApiServer):
    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        if plural == PLURAL:
            raise ApiUnreachable(f"GET /apis/{API}/namespaces/{namespace}/{PLURAL}/{name}: Kubernetes API unreachable")
        return await super().get(api_version, plural, namespace, name)


def test_a_tick_whose_read_times_out_decides_on_the_watch_copy_instead_of_showing_no_status() -> None:
    """The read is a GET when the watch has not shown the tick's last write (a new experiment: none yet). On the
    loaded server those GETs timed out for minutes and the experiment had no phase at all, which the docs read as
    'not handled by the operator'; the watch's copy is as good, since the status write is guarded by its version."""
    objects = _GetsTimeOut()
    manifest = copy.deepcopy(experiment_manifest("loaded", "http://prometheus.invalid:9090", INTERVAL))
    manifest["metadata"].update(uid="u-1", generation=1)
    objects.add(PLURAL, manifest)
    runtime = _Runtime(objects)  # type: ignore[arg-type]
    assert _tick(runtime, objects) == INTERVAL
    assert _status(objects)["phase"] == "Progressing"


def test_an_experiment_with_a_status_whose_read_times_out_is_retried_not_decided_on_the_watch_copy() -> None:
    """It already shows a phase; the watch's copy may lag its last write, and deciding on it would cost a tick's
    queries and a refused write on a server that is already failing."""
    objects = _GetsTimeOut()
    manifest = copy.deepcopy(experiment_manifest("loaded", "http://prometheus.invalid:9090", INTERVAL))
    manifest["metadata"].update(uid="u-1", generation=1)
    manifest["status"] = {"phase": "Progressing", "reason": "Started"}
    objects.add(PLURAL, manifest)
    runtime = _Runtime(objects)  # type: ignore[arg-type]
    runtime.retries.jitter = lambda key: 0.0
    writes = objects.writes
    assert _tick(runtime, objects) == 5.0
    assert objects.writes == writes and _status(objects) == {"phase": "Progressing", "reason": "Started"}

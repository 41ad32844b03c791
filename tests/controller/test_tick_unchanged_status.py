"""A tick whose status is the one already stored sends no status write: on the real API server such a write
still cost 13.3 of a changing write's 15.6 ms of CPU (benchmarks/apicost.py) and changed nothing. A tick that
analyses always writes (lastAnalysisAt moves: it is how staleness is seen)."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from stack import canary_manifest
from tick_support import fake_tick_ports

from mlrollouts.api import ModelExperiment
from mlrollouts.controller.ports import Runtime
from mlrollouts.controller.tick import TickPorts, reconcile
from mlrollouts.engine import Observations, VariantObservation
from mlrollouts.engine.types import Event
from mlrollouts.routing.fake import FakeKubeObjects

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
API = "mlrollouts.dev/v1alpha1"


class _Read:
    async def observe(self, experiment: ModelExperiment, now: datetime) -> Observations:
        variants = {
            v.name: VariantObservation({"successes": 10.0, "trials": 20.0}, {"p95-latency": 0.1})
            for v in (experiment.spec.champion, *experiment.spec.challengers)
        }
        return Observations(time=now, variants=variants, cumulative_counters=True)


class _Cluster:
    def __init__(self, manifest: dict[str, Any]) -> None:
        self.objects = FakeKubeObjects()
        manifest = copy.deepcopy(manifest)
        manifest["metadata"].update(uid="u-1", generation=1)
        self.objects.add("modelexperiments", manifest)
        self.name = manifest["metadata"]["name"]
        self.writes: list[dict[str, Any]] = []
        self.kept: list[tuple[str, str, str | None]] = []

    def body(self) -> dict[str, Any]:
        return self.objects.stored(API, "modelexperiments", "default", self.name)

    def ports(self) -> TickPorts:
        async def post_event(event: Event) -> None:
            return None

        ports = fake_tick_ports(self.objects, _Read(), post_event)

        async def write_status(namespace: str, name: str, status: dict, version: str | None) -> str | None:
            self.writes.append(status)
            return await ports.write_status(namespace, name, status, version)

        def unchanged(namespace: str, name: str, version: str | None) -> None:
            self.kept.append((namespace, name, version))

        return TickPorts(**{**ports.__dict__, "write_status": write_status, "status_unchanged": unchanged})

    def tick(self, at: datetime) -> Exception | None:
        try:
            asyncio.run(reconcile(self.body(), at, self.ports()))
        except Exception as error:
            return error
        return None


def test_an_invalid_experiment_rechecked_with_nothing_new_sends_no_write() -> None:
    cluster = _Cluster(
        canary_manifest("bad", "http://127.0.0.1:9", challengers=[{"name": "churn-v3", "service": "churn-v2"}])
    )
    assert cluster.tick(T0) is None
    assert len(cluster.writes) == 1 and cluster.body()["status"]["phase"] == "Invalid"
    version = cluster.body()["metadata"]["resourceVersion"]
    assert cluster.tick(T0 + timedelta(seconds=30)) is None  # the recheck: same problems, same status
    assert len(cluster.writes) == 1
    assert cluster.body()["metadata"]["resourceVersion"] == version
    assert cluster.kept == [("default", "bad", version)]  # the runtime may trust the watch's copy at that version


def test_a_tick_that_analyses_always_writes() -> None:
    cluster = _Cluster(canary_manifest("ok", "http://127.0.0.1:9", traffic={"provider": "gateway"}))
    for seconds in (0, 60, 120):
        assert cluster.tick(T0 + timedelta(seconds=seconds)) is None
    assert len(cluster.writes) == 3
    assert cluster.kept == []
    assert cluster.body()["status"]["lastAnalysisAt"].startswith("2026-12-01T12:02")


class _CountingGets(FakeKubeObjects):
    gets = 0

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        self.gets += 1
        return await super().get(api_version, plural, namespace, name)


def test_after_a_write_left_out_the_next_tick_decides_on_the_watch_copy_without_a_get() -> None:
    objects = _CountingGets()
    runtime = Runtime(objects)
    live = {"metadata": {"namespace": "default", "name": "x", "resourceVersion": "7"}, "status": {"phase": "Invalid"}}
    assert asyncio.run(runtime.read("default", "x", live)) is None  # nothing known of it yet: a GET (not found)
    assert objects.gets == 1
    runtime.status_unchanged("default", "x", "7")
    assert asyncio.run(runtime.read("default", "x", live)) == live
    assert objects.gets == 1

"""Every failing tick leaves a phase and a Ready=False reason within that tick, and a failure that repeats
at every tick is one Event with a count (as Kubernetes' event series), not one Event per tick."""

from __future__ import annotations

import asyncio
import copy
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from stack import canary_manifest, virtual_service_manifest
from tick_support import fake_tick_ports

from mlrollouts.api import ModelExperiment
from mlrollouts.cli.experiment_view import render_experiment
from mlrollouts.controller.events import EventRecorder
from mlrollouts.controller.tick import TickPorts, reconcile
from mlrollouts.engine import Observations, VariantObservation
from mlrollouts.engine.types import Event
from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.fake import FakeKubeObjects
from mlrollouts.routing.kube import ApiRequestFailed, ObjectConflict

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
API = "mlrollouts.dev/v1alpha1"


class _CompleteRead:
    """Every query answered; the champion has data, the challenger none yet (it has no traffic)."""

    async def observe(self, experiment: ModelExperiment, now: datetime) -> Observations:
        samples = {"successes": 10.0, "trials": 20.0}
        champion = VariantObservation(samples, {"p95-latency": 0.1})
        return Observations(time=now, variants={experiment.spec.champion.name: champion}, cumulative_counters=True)


class _Cluster:
    """The fake API server, the tick's ports over it, and the Events it received."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.objects = FakeKubeObjects()
        manifest = copy.deepcopy(manifest)
        manifest["metadata"].update(uid="u-1", generation=1)
        self.objects.add("modelexperiments", manifest)
        self.recorder = EventRecorder(self.objects, clock=lambda: T0)

    def body(self) -> dict[str, Any]:
        return self.objects.stored(API, "modelexperiments", "default", self.name)

    @property
    def name(self) -> str:
        return next(k[3] for k in self.objects.objects if k[1] == "modelexperiments")

    def ports(self, body: dict[str, Any]) -> TickPorts:
        async def clear_annotation(namespace: str, name: str, key: str) -> None:
            raise AssertionError("no annotation in these tests")

        async def post_event(event: Event) -> None:
            await self.recorder.post(body, event)

        return fake_tick_ports(self.objects, _CompleteRead(), post_event, clear_annotation)

    def tick(self, at: datetime) -> Exception | None:
        body = self.body()
        try:
            asyncio.run(reconcile(body, at, self.ports(body)))
        except Exception as error:
            return error
        return None

    def events(self) -> list[dict[str, Any]]:
        return [o for k, o in self.objects.objects.items() if k[1] == "events"]


def _manifest(**spec: Any) -> dict[str, Any]:
    return canary_manifest("broken", "http://127.0.0.1:9", **spec)


def _vs(**changes: Any) -> dict[str, Any]:
    return {**virtual_service_manifest("churn", "churn-v2", "churn-v3"), **changes}


def _deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 10},
    }


CASES = {
    "VirtualService missing": (_manifest(), [], "VirtualService default/churn not found"),
    "route name missing": (
        _manifest(traffic={"provider": "istio", "istio": {"virtualService": "churn", "routes": ["predcit"]}}),
        [("virtualservices", _vs())],
        "spec.traffic.istio.routes names predcit",
    ),
    "HTTPRoute missing": (
        _manifest(traffic={"provider": "gatewayAPI", "gatewayAPI": {"httpRoute": "churn"}}),
        [],
        "HTTPRoute default/churn not found",
    ),
    "Deployment missing": (
        _manifest(traffic={"provider": "service", "service": {"name": "churn"}}),
        [("deployments", _deployment("churn-v2"))],
        "churn-v3",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_missing_routing_object_is_pending_with_a_reason_and_one_event_with_a_count(case: str) -> None:
    manifest, seeded, text = CASES[case]
    cluster = _Cluster(manifest)
    for plural, obj in seeded:
        cluster.objects.add(plural, obj)
    for index in range(3):
        assert isinstance(cluster.tick(T0 + timedelta(seconds=5 * index)), RoutingError)
    status = cluster.body()["status"]
    assert (status["phase"], status["reason"]) == ("Pending", "RoutingFailed")
    assert text in status["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RoutingFailed") and text in ready["message"]
    assert "weights" not in status or not status["weights"]
    events = cluster.events()
    assert [(e["type"], e["reason"], e["count"]) for e in events] == [("Warning", "RoutingFailed", 3)]
    assert events[0]["series"]["count"] == 3 and events[0]["involvedObject"]["uid"] == "u-1"


def test_a_failure_report_that_loses_a_race_is_a_conflict_so_the_tick_rereads_at_once() -> None:
    """kopf's own writes on a new object change its resourceVersion between the tick's read and its status
    write: a RoutingError would wait the 5 s retry interval with nothing in status; a conflict re-reads now."""
    cluster = _Cluster(_manifest())
    body = cluster.body()
    cluster.objects.objects[next(k for k in cluster.objects.objects if k[1] == "modelexperiments")]["metadata"][
        "resourceVersion"
    ] = "changed-by-kopf"
    with pytest.raises(ObjectConflict):
        asyncio.run(reconcile(body, T0, cluster.ports(body)))
    assert cluster.tick(T0) is not None and cluster.body()["status"]["reason"] == "RoutingFailed"


def test_a_running_experiment_keeps_its_phase_and_weights_when_its_route_disappears() -> None:
    cluster = _Cluster(_manifest())
    cluster.objects.add("virtualservices", _vs())
    assert cluster.tick(T0) is None
    running = cluster.body()["status"]
    assert running["phase"] == "Progressing" and running["weights"] == {"churn-v2": 80, "churn-v3": 20}
    del cluster.objects.objects[("networking.istio.io/v1", "virtualservices", "default", "churn")]
    assert isinstance(cluster.tick(T0 + timedelta(minutes=1)), RoutingError)
    status = cluster.body()["status"]
    assert (status["phase"], status["weights"], status["history"]) == (
        "Progressing",
        running["weights"],
        running["history"],
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RoutingFailed")
    assert "VirtualService default/churn not found" in ready["message"]


def test_an_unexpected_error_still_leaves_a_phase_and_a_reason() -> None:
    cluster = _Cluster(_manifest())
    body = cluster.body()
    ports = cluster.ports(body)

    async def broken(experiment: ModelExperiment) -> Any:
        raise ZeroDivisionError("surprise")

    with pytest.raises(ZeroDivisionError):
        asyncio.run(reconcile(body, T0, TickPorts(**{**ports.__dict__, "metrics_for": broken})))
    status = cluster.body()["status"]
    assert (status["phase"], status["reason"]) == ("Pending", "ReconcileError")
    assert "ZeroDivisionError: surprise" in status["message"]


@pytest.mark.parametrize(
    ("where", "value"),
    [("canary", {"steps": [20, 100], "stepDuration": "99999999999999999999d"}), ("timeout", "9999999999999999d")],
)
def test_overflowing_durations_are_invalid_within_one_tick(where: str, value: Any) -> None:
    manifest = _manifest()
    if where == "canary":
        manifest["spec"]["canary"] = value
    else:
        manifest["spec"]["analysis"]["prometheus"]["timeout"] = value
    cluster = _Cluster(manifest)
    assert cluster.tick(T0) is None
    status = cluster.body()["status"]
    assert (status["phase"], status["reason"]) == ("Invalid", "InvalidSpec")
    assert "365d" in status["message"]


def test_champion_and_challenger_on_the_same_service_are_invalid_within_one_tick() -> None:
    manifest = _manifest(challengers=[{"name": "churn-v3", "service": "churn-v2"}])
    cluster = _Cluster(manifest)
    assert cluster.tick(T0) is None
    status = cluster.body()["status"]
    assert status["phase"] == "Invalid" and "churn-v2" in status["message"] and "service" in status["message"]


def test_mlrollouts_status_shows_the_phase_and_reason_of_a_failing_experiment() -> None:
    cluster = _Cluster(_manifest())
    cluster.tick(T0)
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(render_experiment(cluster.body()))
    text = console.export_text()
    assert "Pending" in text and "RoutingFailed" in text and "VirtualService default/churn not found" in text
    assert "is the operator running" not in text


def test_a_new_message_is_a_new_event_and_an_expired_event_is_created_again() -> None:
    objects = FakeKubeObjects()
    recorder = EventRecorder(objects, clock=lambda: T0)
    body = {"apiVersion": API, "kind": "ModelExperiment", "metadata": {"name": "x", "namespace": "default"}}

    async def post(message: str) -> None:
        await recorder.post(body, Event("Warning", "RoutingFailed", message))

    asyncio.run(post("a"))
    asyncio.run(post("b"))
    asyncio.run(post("a"))
    counts = sorted((o["message"], o["count"]) for k, o in objects.objects.items())
    assert counts == [("a", 2), ("b", 1)]
    (series,) = [o["series"] for o in objects.objects.values() if "series" in o]
    # A MicroTime: the real API server refuses the patch (422) without the six fraction digits.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", series["lastObservedTime"]), series
    objects.objects.clear()  # the API server expired them
    asyncio.run(post("a"))
    assert [(o["message"], o["count"]) for o in objects.objects.values()] == [("a", 1)]


def test_ready_turns_true_only_in_the_tick_that_applied_the_first_step() -> None:
    cluster = _Cluster(_manifest())
    assert isinstance(cluster.tick(T0), RoutingError)  # the VirtualService is not there yet: nothing applied
    waiting = cluster.body()["status"]
    ready = next(c for c in waiting["conditions"] if c["type"] == "Ready")
    assert (waiting["phase"], ready["status"], ready["observedGeneration"]) == ("Pending", "False", 1)
    assert "weightSummary" not in waiting
    cluster.objects.add("virtualservices", _vs())
    assert cluster.tick(T0 + timedelta(seconds=5)) is None
    status = cluster.body()["status"]
    routes = cluster.objects.stored("networking.istio.io/v1", "virtualservices", "default", "churn")
    weights = {d["destination"]["host"]: d["weight"] for d in routes["spec"]["http"][0]["route"]}
    assert weights == {"churn-v2": 80, "churn-v3": 20}
    assert (status["phase"], status["weightSummary"]) == ("Progressing", "churn-v3=20%")
    assert {c["type"]: (c["status"], c["observedGeneration"]) for c in status["conditions"]}["Ready"] == ("True", 1)


class _ForbiddenObjects(FakeKubeObjects):
    """The API server's answer when RBAC lacks a rule: HTTP 403 with the verb, resource and group named."""

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        message = (
            f'{plural}.networking.istio.io "{name}" is forbidden: User "system:serviceaccount:ops:op" cannot get '
            f'resource "{plural}" in API group "networking.istio.io" in the namespace "{namespace}"'
        )
        raise ApiRequestFailed(f"GET VirtualService {namespace}/{name} failed with HTTP 403: {message}", 403)


def test_a_missing_permission_is_reason_forbidden_naming_it_not_a_routing_outage() -> None:
    cluster = _Cluster(_manifest())
    cluster.objects.__class__ = _ForbiddenObjects
    assert isinstance(cluster.tick(T0), ApiRequestFailed)
    status = cluster.body()["status"]
    assert (status["phase"], status["reason"]) == ("Pending", "Forbidden")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Forbidden")
    assert 'cannot get resource "virtualservices" in API group "networking.istio.io"' in ready["message"]
    assert [(e["type"], e["reason"]) for e in cluster.events()] == [("Warning", "Forbidden")]

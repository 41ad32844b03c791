"""The operator end to end: kopf against the API server (real when built, else the emulator), real Prometheus
and real metric exporters.

Timings are compressed (1 s analysis interval, 2 s steps), so each test runs in seconds, not hours.
"""

from __future__ import annotations

import contextlib
import re
import time

import kubernetes
import pytest
from stack import Stack, canary_manifest, virtual_service_manifest

from mlrollouts.localstack.prometheus import PrometheusServer

pytestmark = pytest.mark.integration


def _route_weights(stack: Stack, name: str = "churn") -> dict[str, int]:
    route = next(r for r in stack.virtual_service(name)["spec"]["http"] if r.get("name") == "predict")
    return {d["destination"]["host"]: d.get("weight", 0) for d in route["route"]}


def _challenger_weights_reached(status: dict) -> list[int]:
    """Challenger weights of each step advance, in order, from the experiment's history."""
    advances = [h for h in status["history"] if h["action"] == "advance"]
    return [int(re.search(r"churn-v3 (\d+)%", h["to"]).group(1)) for h in advances]


def _wait_for_event(stack: Stack, name: str, reason: str, kind: str, text: str, timeout: float = 10) -> None:
    """kopf posts Events asynchronously; wait for the one about `name` with `reason`."""
    core = kubernetes.client.CoreV1Api(stack.api)
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, str, str]] = []
    while time.monotonic() < deadline:
        events = core.list_namespaced_event("default").items
        seen = [(e.type, e.reason, e.message or "") for e in events if e.involved_object.name == name]
        if any(t == kind and r == reason and text in m for t, r, m in seen):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {kind} Event {reason} mentioning {text!r} for {name}; saw {seen}")


def _setup(stack: Stack, name: str, vs: str = "churn") -> None:
    stack.objects.create_namespaced_custom_object(
        "networking.istio.io",
        "v1",
        "default",
        "virtualservices",
        virtual_service_manifest(vs, "churn-v2", "churn-v3"),
    )


def _cleanup(stack: Stack, *names: str, vs: str = "churn") -> None:
    for name in names:
        with contextlib.suppress(kubernetes.client.ApiException):
            stack.objects.delete_namespaced_custom_object(
                "mlrollouts.dev", "v1alpha1", "default", "modelexperiments", name
            )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        items = stack.objects.list_namespaced_custom_object("mlrollouts.dev", "v1alpha1", "default", "modelexperiments")
        if not [i for i in items["items"] if i["metadata"]["name"] in names]:
            break
        time.sleep(0.2)
    with contextlib.suppress(kubernetes.client.ApiException):
        stack.objects.delete_namespaced_custom_object("networking.istio.io", "v1", "default", "virtualservices", vs)


def test_better_challenger_is_promoted_step_by_step(stack: Stack) -> None:
    _setup(stack, "better")
    stack.exporter.control("churn-v2", success=0.72)
    stack.exporter.control("churn-v3", success=0.78)
    stack.create(canary_manifest("better", stack.prometheus.address))
    stack.follow_traffic("better")
    try:
        status = stack.wait_for("better", lambda s: s.get("phase") == "Promoted", 90, "phase Promoted")
        assert _route_weights(stack) == {"churn-v2": 0, "churn-v3": 100}
        assert _challenger_weights_reached(status) == [50], status["history"]
        assert status["history"][-1]["action"] == "promoted"
        route = next(r for r in stack.virtual_service("churn")["spec"]["http"] if r.get("name") == "admin")
        assert route["route"] == [{"destination": {"host": "churn-v2"}}], "unmanaged route must be untouched"
    finally:
        _cleanup(stack, "better")


def test_latency_regression_rolls_back_within_failure_limit(stack: Stack) -> None:
    _setup(stack, "slow")
    stack.exporter.control("churn-v3", latency=2.0)
    stack.create(canary_manifest("slow", stack.prometheus.address, steps=[20, 100]))
    stack.follow_traffic("slow")
    try:
        status = stack.wait_for("slow", lambda s: s.get("phase") == "RolledBack", 45, "phase RolledBack")
        assert _route_weights(stack)["churn-v2"] == 100
        assert "p95-latency" in status["analysis"]["reason"]
        failing = next(g for g in status["guardrails"] if g["name"] == "p95-latency")
        assert failing["consecutiveFailures"] == 2 and failing["healthy"] is False
    finally:
        _cleanup(stack, "slow")


def _run_until_prometheus_dies(stack: Stack, name: str, **overrides: object) -> None:
    """Start a canary on its own Prometheus, let it read samples, then stop that Prometheus mid-run."""
    prometheus = PrometheusServer([stack.exporter.target]).start()
    try:
        manifest = canary_manifest(name, prometheus.address, steps=[20, 100], **overrides)
        manifest["spec"]["canary"]["stepDuration"] = "4s"  # would promote within seconds if metrics flowed
        stack.create(manifest)
        stack.follow_traffic(name)
        stack.wait_for(
            name, lambda s: (s.get("samples", {}).get("churn-v3", {}).get("trials") or 0) > 0, 30, "samples read"
        )
    finally:
        prometheus.stop()


def test_prometheus_stopped_mid_run_holds_and_never_promotes(stack: Stack) -> None:
    _setup(stack, "outage")
    stack.exporter.control("churn-v2", success=0.72)
    stack.exporter.control("churn-v3", success=0.78)
    try:
        _run_until_prometheus_dies(stack, "outage")
        status = stack.wait_for(
            "outage",
            lambda s: s.get("phase") == "Paused" and s.get("reason") == "MetricsUnavailable",
            30,
            "Paused with MetricsUnavailable",
        )
        assert status["weights"]["churn-v3"] == 20, "hold keeps the traffic where it was"
        assert status["metricsFailures"] >= 3
        available = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")
        assert available["status"] == "False" and "unreachable" in available["message"]
        time.sleep(5)  # longer than the step: with no data, nothing may advance or promote
        status = stack.status("outage")
        assert status["phase"] == "Paused" and _route_weights(stack)["churn-v3"] == 20
        assert "promoted" not in [h["action"] for h in status["history"]]
    finally:
        _cleanup(stack, "outage")


def test_prometheus_stopped_mid_run_rolls_back_when_configured(stack: Stack) -> None:
    _setup(stack, "outage-rb")
    try:
        _run_until_prometheus_dies(stack, "outage-rb", onMetricsUnavailable="rollback")
        status = stack.wait_for("outage-rb", lambda s: s.get("phase") == "RolledBack", 30, "RolledBack")
        assert status["reason"] == "MetricsUnavailable"
        assert _route_weights(stack)["churn-v2"] == 100
    finally:
        _cleanup(stack, "outage-rb")


def test_invalid_manifest_is_marked_invalid_with_the_field_and_moves_no_traffic(stack: Stack) -> None:
    _setup(stack, "broken")
    # Past the 365 d bound the operator enforces; the CRD cannot express it, so the API server stores it (a
    # rule the CRD does express, such as steps ending at 100, is refused by the real server at create).
    manifest = canary_manifest("broken", stack.prometheus.address)
    manifest["spec"]["canary"]["stepDuration"] = "400d"
    stack.create(manifest)
    try:
        status = stack.wait_for("broken", lambda s: s.get("phase") == "Invalid", 20, "phase Invalid")
        assert "spec.canary.stepDuration" in status["message"] and "365d" in status["message"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False"
        assert _route_weights(stack) == {"churn-v2": 100}, "no traffic moved on an invalid spec"
        _wait_for_event(stack, "broken", "InvalidSpec", "Warning", "canary.stepDuration")
        stack.objects.patch_namespaced_custom_object(
            "mlrollouts.dev",
            "v1alpha1",
            "default",
            "modelexperiments",
            "broken",
            {"spec": {"canary": {"stepDuration": "2s"}}},
        )
        stack.wait_for("broken", lambda s: s.get("phase") == "Progressing", 20, "fixed spec resumes")
    finally:
        _cleanup(stack, "broken")


def test_delete_mid_run_restores_the_champion(stack: Stack) -> None:
    _setup(stack, "deleted")
    stack.create(canary_manifest("deleted", stack.prometheus.address, steps=[30, 100]))
    try:
        stack.wait_for("deleted", lambda s: s.get("weights", {}).get("churn-v3") == 30, 20, "first step")
        assert _route_weights(stack)["churn-v3"] == 30
    finally:
        _cleanup(stack, "deleted", vs="keep")
    assert _route_weights(stack) == {"churn-v2": 100, "churn-v3": 0}
    _wait_for_event(stack, "deleted", "TrafficRestored", "Normal", "churn-v2 restored to 100 %")
    _cleanup(stack)


def test_operator_killed_mid_step_continues_without_repeating_or_skipping(stack: Stack) -> None:
    _setup(stack, "restart")
    stack.exporter.control("churn-v2", success=0.72)
    stack.exporter.control("churn-v3", success=0.78)
    manifest = canary_manifest("restart", stack.prometheus.address, steps=[10, 20, 40, 70, 100])
    stack.create(manifest)
    stack.follow_traffic("restart")
    try:
        stack.wait_for("restart", lambda s: (s.get("step") or 0) >= 1, 40, "step 1")
        stack.operator.kill()
        time.sleep(1.5)
        stack.operator.start()
        status = stack.wait_for("restart", lambda s: s.get("phase") == "Promoted", 90, "Promoted after restart")
        reached = _challenger_weights_reached(status)
        assert reached == [20, 40, 70], f"a step was repeated or skipped: {status['history']}"
    finally:
        _cleanup(stack, "restart")


def test_hand_edited_virtual_service_is_repaired(stack: Stack) -> None:
    _setup(stack, "drift")
    stack.create(canary_manifest("drift", stack.prometheus.address, steps=[30, 100]))
    try:
        stack.wait_for("drift", lambda s: s.get("weights", {}).get("churn-v3") == 30, 20, "first step")
        vs = stack.virtual_service("churn")
        for route in vs["spec"]["http"]:
            if route.get("name") == "predict":
                for destination in route["route"]:
                    destination["weight"] = 100 if destination["destination"]["host"] == "churn-v3" else 0
        stack.objects.replace_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", "churn", vs
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _route_weights(stack)["churn-v3"] != 30:
            time.sleep(0.2)
        assert _route_weights(stack)["churn-v3"] == 30, "drift was not repaired"
        _wait_for_event(stack, "drift", "TrafficDrift", "Warning", "repaired")
    finally:
        _cleanup(stack, "drift")


def test_second_experiment_on_the_same_route_is_a_conflict(stack: Stack) -> None:
    _setup(stack, "first")
    stack.create(canary_manifest("first", stack.prometheus.address, steps=[30, 100]))
    try:
        stack.wait_for("first", lambda s: s.get("phase") == "Progressing", 20, "first Progressing")
        stack.create(canary_manifest("second", stack.prometheus.address, steps=[30, 100]))
        status = stack.wait_for("second", lambda s: s.get("phase") == "Invalid", 20, "second Invalid")
        assert status["reason"] == "Conflict" and "first" in status["message"]
    finally:
        _cleanup(stack, "first", "second")


def test_an_invalid_experiment_does_not_block_a_valid_one_on_the_same_route(stack: Stack) -> None:
    _setup(stack, "broken-first")
    # Parses, but the platform allows no webhook address: Invalid before it ever moved traffic.
    broken = canary_manifest(
        "broken-first", stack.prometheus.address, webhooks=[{"name": "x", "type": "preStart", "url": "http://x:1/"}]
    )
    stack.create(broken)
    try:
        stack.wait_for("broken-first", lambda s: s.get("phase") == "Invalid", 20, "first Invalid")
        stack.create(canary_manifest("valid-second", stack.prometheus.address, steps=[30, 100]))
        status = stack.wait_for(
            "valid-second", lambda s: s.get("phase") in ("Progressing", "Invalid"), 20, "Progressing or Invalid"
        )
        assert status["phase"] == "Progressing", f"an Invalid experiment held the route: {status.get('message')}"
        assert _route_weights(stack)["churn-v3"] == 30
        assert stack.status("broken-first")["phase"] == "Invalid"
    finally:
        _cleanup(stack, "broken-first", "valid-second")

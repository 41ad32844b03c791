"""The real operator on experiments that cannot run: it moves no traffic, says why in status within a tick,
and a failure that repeats every tick is one Event with a count."""

from __future__ import annotations

import contextlib
import time

import kubernetes
import pytest
from stack import GROUP, PLURAL, VERSION, Stack, canary_manifest, virtual_service_manifest

from mlrollouts.cli.main import main
from proc_support import refused_port

pytestmark = pytest.mark.integration


def _events(stack: Stack, name: str) -> list[kubernetes.client.CoreV1Event]:
    events = kubernetes.client.CoreV1Api(stack.api).list_namespaced_event("default").items
    return [e for e in events if e.involved_object.name == name]


def _ready(status: dict) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def _route_weights(stack: Stack) -> dict[str, int]:
    route = next(r for r in stack.virtual_service("churn")["spec"]["http"] if r.get("name") == "predict")
    return {d["destination"]["host"]: d.get("weight", 100) for d in route["route"]}


@contextlib.contextmanager
def _experiment(stack: Stack, name: str, manifest: dict, *, with_route: bool):
    if with_route:
        stack.objects.create_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", virtual_service_manifest("churn", *VARIANTS)
        )
    stack.create(manifest)
    try:
        yield
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            stack.objects.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                stack.get(name)
            except kubernetes.client.ApiException:
                break
            time.sleep(0.2)
        if with_route:
            stack.objects.delete_namespaced_custom_object(
                "networking.istio.io", "v1", "default", "virtualservices", "churn"
            )


VARIANTS = ("churn-v2", "churn-v3")


def test_prometheus_unreachable_from_the_start_moves_no_traffic(stack: Stack) -> None:
    nowhere = f"http://127.0.0.1:{refused_port()}"  # a real address that refuses connections
    with _experiment(stack, "blind", canary_manifest("blind", nowhere), with_route=True):
        status = stack.wait_for(
            "blind",
            lambda s: "4 failed reads" in (s.get("message") or ""),
            30,
            "four ticks waiting for the metrics",
        )
        assert (status["phase"], status["reason"]) == ("Pending", "MetricsUnavailable")
        assert not status.get("weights") and not status.get("history")
        ready = _ready(status)
        assert (ready["status"], ready["reason"]) == ("False", "MetricsUnavailable")
        assert f"Prometheus at {nowhere} is unreachable" in ready["message"]
        assert _route_weights(stack) == {"churn-v2": 100}  # the champion keeps every request
        warnings = [(e.reason, e.count) for e in _events(stack, "blind") if e.type == "Warning"]
        assert warnings == [("MetricsUnavailable", 1)], warnings


def test_a_missing_virtual_service_is_pending_with_a_reason_and_one_counted_event(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    with _experiment(stack, "no-route", canary_manifest("no-route", stack.prometheus.address), with_route=False):
        status = stack.wait_for("no-route", lambda s: s.get("phase") is not None, 15, "a phase")
        assert (status["phase"], status["reason"]) == ("Pending", "RoutingFailed")
        assert "VirtualService default/churn not found" in status["message"]
        assert (_ready(status)["status"], _ready(status)["reason"]) == ("False", "RoutingFailed")

        deadline = time.monotonic() + 30  # the failing tick is retried every 5 s
        routing: list[kubernetes.client.CoreV1Event] = []
        while time.monotonic() < deadline:
            routing = [e for e in _events(stack, "no-route") if e.reason == "RoutingFailed"]
            if routing and (routing[0].count or 0) >= 3:
                break
            time.sleep(0.5)
        assert len(routing) == 1 and routing[0].count >= 3, [(e.reason, e.count) for e in routing]

        assert main(["status", "no-route"]) == 0
        out = capsys.readouterr().out
        assert "Pending" in out and "RoutingFailed" in out and "is the operator running" not in out


def test_a_missing_secret_waits_pending_and_the_experiment_starts_once_it_is_created(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a Pod waits for a Secret it mounts: Pending, Ready=False SecretNotFound, no traffic; not Invalid."""
    monkeypatch.setenv("MLROLLOUTS_PROMETHEUS_ALLOWED_ADDRESSES", stack.prometheus.address)
    monkeypatch.setenv("MLROLLOUTS_PROMETHEUS_SECRET_NAMES", "prom-token")
    stack.operator.stop()
    stack.operator.start().wait_serving()
    manifest = canary_manifest("awaits-secret", stack.prometheus.address)
    manifest["spec"]["analysis"]["prometheus"]["bearerTokenSecretRef"] = {"name": "prom-token", "key": "token"}
    core = kubernetes.client.CoreV1Api(stack.api)
    with _experiment(stack, "awaits-secret", manifest, with_route=True):
        try:
            status = stack.wait_for("awaits-secret", lambda s: s.get("phase") is not None, 15, "a phase")
            assert (status["phase"], status["reason"]) == ("Pending", "SecretNotFound"), status
            assert "spec.analysis.prometheus.bearerTokenSecretRef" in status["message"]
            assert "secret default/prom-token not found" in status["message"]
            assert (_ready(status)["status"], _ready(status)["reason"]) == ("False", "SecretNotFound")
            assert _route_weights(stack) == {"churn-v2": 100}, "no traffic moved while waiting"

            core.create_namespaced_secret(
                "default", {"metadata": {"name": "prom-token"}, "stringData": {"token": "t0ken"}}
            )
            status = stack.wait_for(
                "awaits-secret", lambda s: s.get("phase") == "Progressing", 30, "started once the Secret exists"
            )
            assert _ready(status).get("reason") != "SecretNotFound"
        finally:
            with contextlib.suppress(kubernetes.client.ApiException):
                core.delete_namespaced_secret("prom-token", "default")

"""Giving the champion its traffic back when the spec no longer describes the route the split is on.

The attack: a tenant (or a typo) edits a running experiment so that its spec is invalid, or names another
VirtualService, then deletes it. The champion must get 100 % back on the route the traffic was actually moved
on, which the operator keeps in status (a subresource tenants cannot write), never the one the spec names now.
"""

from __future__ import annotations

import contextlib
import time

import kubernetes
import pytest
from stack import Stack, canary_manifest, virtual_service_manifest
from test_operator_end_to_end import _cleanup, _route_weights, _setup, _wait_for_event

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "mlrollouts.dev", "v1alpha1", "modelexperiments"


def _patch_spec(stack: Stack, name: str, spec: dict) -> None:
    stack.objects.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, {"spec": spec})


def _delete_and_wait(stack: Stack, name: str) -> None:
    stack.objects.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            stack.get(name)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return
            raise
        time.sleep(0.2)
    raise AssertionError(f"{name} was not deleted; operator log:\n{stack.operator.log()[-3000:]}")


def test_deleting_an_experiment_whose_spec_turned_invalid_restores_the_champion(stack: Stack) -> None:
    _setup(stack, "typo")
    stack.create(canary_manifest("typo", stack.prometheus.address, steps=[30, 100]))
    try:
        stack.wait_for("typo", lambda s: s.get("weights", {}).get("churn-v3") == 30, 20, "first step")
        # Past the 365 d bound the operator enforces; the CRD cannot express it, so the API server stores it.
        _patch_spec(stack, "typo", {"canary": {"stepDuration": "400d"}})
        status = stack.wait_for("typo", lambda s: s.get("phase") == "Invalid", 20, "phase Invalid")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert "VirtualService default/churn" in ready["message"] and "churn-v3 30" in ready["message"], ready
        assert _route_weights(stack)["churn-v3"] == 30, "the applied split is kept while the spec is invalid"
        _delete_and_wait(stack, "typo")
        assert _route_weights(stack) == {"churn-v2": 100, "churn-v3": 0}
        _wait_for_event(stack, "typo", "TrafficRestored", "Normal", "churn-v2 restored to 100 %")
    finally:
        _cleanup(stack, "typo")


def test_a_running_experiment_moved_to_another_virtual_service_is_refused_and_deleting_restores_the_first(
    stack: Stack,
) -> None:
    _setup(stack, "moved")
    stack.objects.create_namespaced_custom_object(
        "networking.istio.io", "v1", "default", "virtualservices", virtual_service_manifest("other", "churn-v2", "x")
    )
    stack.create(canary_manifest("moved", stack.prometheus.address, steps=[30, 100]))
    try:
        stack.wait_for("moved", lambda s: s.get("weights", {}).get("churn-v3") == 30, 20, "first step")
        _patch_spec(stack, "moved", {"traffic": {"istio": {"virtualService": "other"}}})
        status = stack.wait_for("moved", lambda s: s.get("phase") == "Invalid", 20, "the move refused")
        assert status["reason"] == "RoutingChanged", status
        assert "VirtualService default/churn" in status["message"] and "other" in status["message"], status
        assert _route_weights(stack)["churn-v3"] == 30, "the split stays where it was applied"
        assert _route_weights(stack, "other") == {"churn-v2": 100}, "the new route was touched"
        _wait_for_event(stack, "moved", "RoutingChanged", "Warning", "VirtualService default/churn")
        # The record cannot be forged through the main resource: the API server ignores status there.
        with contextlib.suppress(kubernetes.client.ApiException):
            stack.objects.patch_namespaced_custom_object(
                GROUP, VERSION, "default", PLURAL, "moved", {"status": {"routing": {"traffic": None}}}
            )
        _delete_and_wait(stack, "moved")
        assert _route_weights(stack) == {"churn-v2": 100, "churn-v3": 0}, "the first route was not restored"
        assert _route_weights(stack, "other") == {"churn-v2": 100}, "the new route was touched"
    finally:
        _cleanup(stack, "moved")
        _cleanup(stack, vs="other")

"""Disruption budgets keep a replica serving through drains; the optional NetworkPolicy confines the pods."""

from __future__ import annotations

from typing import Any

from chart_support import GATEWAY_ON, HARDENED, of_kind, one, render


def _pod_labels(objects: list[dict[str, Any]], deployment: str) -> dict[str, str]:
    return one(objects, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_disruption_budgets_select_the_operator_and_the_gateway_pods() -> None:
    objects = render({"gateway": GATEWAY_ON})
    operator = one(objects, "PodDisruptionBudget", "rel-mlrollouts")
    gateway = one(objects, "PodDisruptionBudget", "rel-mlrollouts-gateway")
    assert operator["spec"]["maxUnavailable"] == 1 and gateway["spec"]["maxUnavailable"] == 1
    assert _selects(operator["spec"]["selector"], _pod_labels(objects, "rel-mlrollouts"))
    assert not _selects(operator["spec"]["selector"], _pod_labels(objects, "rel-mlrollouts-gateway"))
    assert _selects(gateway["spec"]["selector"], _pod_labels(objects, "rel-mlrollouts-gateway"))
    assert not _selects(gateway["spec"]["selector"], _pod_labels(objects, "rel-mlrollouts"))


def test_disruption_budgets_can_be_turned_off_and_the_gateway_one_needs_the_gateway() -> None:
    assert [p["metadata"]["name"] for p in of_kind(render({}), "PodDisruptionBudget")] == ["rel-mlrollouts"]
    off = render(
        {
            "gateway": {**GATEWAY_ON, "podDisruptionBudget": {"enabled": False}},
            "podDisruptionBudget": {"enabled": False},
        }
    )
    assert of_kind(off, "PodDisruptionBudget") == []


def test_network_policy_is_off_by_default() -> None:
    assert of_kind(render({"gateway": GATEWAY_ON}), "NetworkPolicy") == []


def test_network_policy_confines_the_operator_to_dns_api_server_and_prometheus() -> None:
    objects = render(HARDENED)
    policy = one(objects, "NetworkPolicy", "rel-mlrollouts")["spec"]
    assert _selects(policy["podSelector"], _pod_labels(objects, "rel-mlrollouts"))
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    metrics, probes = policy["ingress"]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == HARDENED["networkPolicy"]["metricsFrom"]
    assert {p["port"] for p in probes["ports"]} == {"healthz", "readyz"}
    container_ports = {
        p["name"]
        for p in one(objects, "Deployment", "rel-mlrollouts")["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {"metrics", "healthz", "readyz"} <= container_ports  # named ports the policy relies on exist
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule.get("ports", [])}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP"), (9090, "TCP")}
    assert all(rule.get("ports") for rule in policy["egress"])  # no rule that opens every port


def test_network_policy_covers_the_gateway_when_enabled() -> None:
    objects = render(HARDENED)
    policy = one(objects, "NetworkPolicy", "rel-mlrollouts-gateway")["spec"]
    assert _selects(policy["podSelector"], _pod_labels(objects, "rel-mlrollouts-gateway"))
    assert {p["port"] for p in policy["ingress"][0]["ports"]} == {"http", "metrics"}
    replicas = [rule for rule in policy["egress"] if rule.get("to")]
    assert replicas == [  # feedback forwarded to the replica that issued its token, whatever gatewayEgress says
        {"to": [{"podSelector": policy["podSelector"]}], "ports": [{"port": 9102, "protocol": "TCP"}]}
    ]

"""The chart renders valid objects for the value sets platform teams use, and lints clean."""

from __future__ import annotations

import base64
import re
from typing import Any

import kubernetes_validate
import pytest
from chart_support import (
    CHART_DIR,
    EVERYTHING_ON,
    GATEWAY_ON,
    RELEASE_NAMESPACE,
    VALUE_SETS,
    custom_resource_schemas,
    of_kind,
    one,
    render,
    validate_custom_resource,
)
from helm_python.chart import lint
from helm_python.errors import HelmRenderError

KUBE_VERSION = "1.30"


def test_lint_strict_has_no_errors_or_warnings() -> None:
    report = lint(CHART_DIR, strict=True, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_lint_with_each_value_set(values_name: str) -> None:
    report = lint(CHART_DIR, VALUE_SETS[values_name], strict=True, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == []


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid(values_name: str) -> None:
    objects = render(VALUE_SETS[values_name])
    assert objects
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in custom_resource_schemas():
            validate_custom_resource(obj)
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_everything_on_renders_the_optional_objects() -> None:
    objects = render(EVERYTHING_ON)
    kinds = {obj["kind"] for obj in objects}
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    assert one(objects, "Deployment", "rel-mlrollouts-gateway")
    assert one(objects, "Service", "rel-mlrollouts-gateway")


def test_defaults_leave_optional_objects_out() -> None:
    objects = render({})
    assert {obj["kind"] for obj in objects}.isdisjoint({"ServiceMonitor", "PrometheusRule", "ConfigMap"})
    assert [d["metadata"]["name"] for d in of_kind(objects, "Deployment")] == ["rel-mlrollouts"]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objects, "Deployment", "rel-mlrollouts")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_pods_are_locked_down(values_name: str) -> None:
    for deployment in of_kind(render(VALUE_SETS[values_name]), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert "livenessProbe" in container and "readinessProbe" in container


def test_operator_liveness_is_kopfs_and_readiness_is_its_own_endpoint() -> None:
    container = operator_container(render({}))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": 8080, "healthz": 8081, "readyz": 8082}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "readyz"}
    assert "--readiness-port=8082" in container["args"]


def test_two_replicas_are_both_active_through_shard_leases_and_spread_over_nodes() -> None:
    objects = render({})
    deployment = one(objects, "Deployment", "rel-mlrollouts")
    assert deployment["spec"]["replicas"] == 2
    container = operator_container(objects)
    args = container["args"]
    assert args[:2] == ["run", "--all-namespaces"]
    assert {"--shards=16", "--lease-duration=15", "--renew-deadline=10", "--retry-period=2"} <= set(args)
    assert not [a for a in args if a.startswith("--peering") or a == "--standalone"]
    assert not of_kind(objects, "ClusterKopfPeering")
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    keys = {c["topologyKey"] for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": 5, "sharding": {"shards": 4}}, "sharding.shards (4) must be at least replicaCount (5)"),
        ({"sharding": {"renewDeadline": 20}}, "retryPeriod < renewDeadline < leaseDuration"),
    ],
)
def test_sharding_values_that_cannot_work_fail_the_render_naming_the_value(values: dict, complaint: str) -> None:
    with pytest.raises(Exception, match=re.escape(complaint)):
        render(values)


def test_without_sharding_two_replicas_peer() -> None:
    objects = render({"sharding": {"enabled": False}})
    assert operator_container(objects)["args"][:3] == ["run", "--all-namespaces", "--peering=mlrollouts"]
    assert one(objects, "ClusterKopfPeering", "mlrollouts")


def test_single_replica_without_peering_runs_standalone() -> None:
    objects = render({**VALUE_SETS["single-replica"], "sharding": {"enabled": False}})
    assert one(objects, "Deployment", "rel-mlrollouts")["spec"]["replicas"] == 1
    assert "--standalone" in operator_container(objects)["args"]
    assert not of_kind(objects, "ClusterKopfPeering")


def test_peering_cannot_be_disabled_with_two_replicas_without_sharding() -> None:
    objects = render({"replicaCount": 2, "peering": {"enabled": False}, "sharding": {"enabled": False}})
    assert "--peering=mlrollouts" in operator_container(objects)["args"]


def test_namespaced_mode_passes_namespaces_and_peers_per_namespace() -> None:
    objects = render({**VALUE_SETS["namespaced"], "sharding": {"enabled": False}})
    args = operator_container(objects)["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=a", "--namespace=b"]
    peerings = of_kind(objects, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["a", "b"]


def test_image_keys_set_the_image() -> None:
    objects = render({"image": {"repository": "registry.local/mlr", "tag": "1.2.3"}})
    assert operator_container(objects)["image"] == "registry.local/mlr:1.2.3"


def test_gateway_reads_its_experiment_in_cluster() -> None:
    objects = render({"gateway": GATEWAY_ON})
    (container,) = one(objects, "Deployment", "rel-mlrollouts-gateway")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "gateway",
        "--host=0.0.0.0",
        "--port=8000",
        "--upstream=churn-v2=http://churn-v2.ml:8080",
        "--upstream=churn-v3=http://churn-v3.ml:8080",
        "--namespace=ml",
        "--experiment=churn-v3",
        "--champion=churn-v2",
        "--user-header=x-user-id",
        "--metrics-port=9102",
        "--signing-key-file=/etc/mlrollouts/signing-keys/keys",
        "--advertise-address=$(POD_IP)",
    ]
    pod_ip = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert pod_ip in container["env"]  # tokens name the pod that issued them; replicas forward feedback there
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    role = one(objects, "Role", "rel-mlrollouts-gateway")
    assert role["metadata"]["namespace"] == "ml"
    assert role["rules"] == [
        {
            "apiGroups": ["mlrollouts.dev"],
            "resources": ["modelexperiments"],
            "resourceNames": ["churn-v3"],
            "verbs": ["get", "list", "watch"],  # one experiment, watched (tests/routing/test_routing_gateway_watch)
        }
    ]


def test_gateway_metrics_stay_off_the_public_service() -> None:
    objects = render({"gateway": GATEWAY_ON | {"serviceType": "LoadBalancer"}})
    public = one(objects, "Service", "rel-mlrollouts-gateway")
    assert [port["name"] for port in public["spec"]["ports"]] == ["http"]
    metrics = one(objects, "Service", "rel-mlrollouts-gateway-metrics")
    assert metrics["spec"]["type"] == "ClusterIP"
    assert metrics["spec"]["ports"] == [{"name": "metrics", "port": 9102, "targetPort": "metrics", "protocol": "TCP"}]


def test_gateway_signing_keys_come_from_one_secret_shared_by_every_replica() -> None:
    objects = render({"gateway": GATEWAY_ON})
    secret = one(objects, "Secret", "rel-mlrollouts-gateway-signing-keys")
    assert len(base64.b64decode(secret["data"]["keys"])) == 64
    pod = one(objects, "Deployment", "rel-mlrollouts-gateway")["spec"]["template"]["spec"]
    assert {"name": "signing-keys", "secret": {"secretName": secret["metadata"]["name"], "defaultMode": 0o440}} in pod[
        "volumes"
    ]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "signing-keys")
    assert "subPath" not in mount  # kubelet must be able to swap rotated keys in
    own = render({"gateway": GATEWAY_ON | {"signingKeys": {"existingSecret": "ml-keys", "secretKey": "k"}}})
    assert of_kind(own, "Secret") == [] or all("signing" not in s["metadata"]["name"] for s in of_kind(own, "Secret"))
    (container,) = one(own, "Deployment", "rel-mlrollouts-gateway")["spec"]["template"]["spec"]["containers"]
    assert "--signing-key-file=/etc/mlrollouts/signing-keys/k" in container["args"]
    assert "--allow-override-header" not in container["args"]


def test_gateway_without_upstreams_fails_with_the_key_to_fix() -> None:
    with pytest.raises(HelmRenderError, match=r"gateway\.upstreams"):
        render({"gateway": {"enabled": True, "experiment": "churn"}})


def test_dashboard_configmap_carries_sidecar_label() -> None:
    objects = render({"grafana": {"dashboard": {"enabled": True, "labelValue": "yes"}}})
    (configmap,) = of_kind(objects, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "yes"
    assert configmap["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert '"uid": "mlrollouts"' in configmap["data"]["mlrollouts.json"]


def test_service_monitor_keeps_experiment_namespace_label() -> None:
    (monitor,) = of_kind(render(EVERYTHING_ON), "ServiceMonitor")
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    assert endpoints["metrics"]["honorLabels"] is True
    assert "http" not in endpoints  # the gateway is scraped on its metrics Service, not its public one
    scraped = [
        s for s in of_kind(render(EVERYTHING_ON), "Service") if "metrics" in {p["name"] for p in s["spec"]["ports"]}
    ]
    assert "rel-mlrollouts-gateway-metrics" in {s["metadata"]["name"] for s in scraped}

"""RBAC grants exactly what the operator uses (contracts), nothing more, in both install modes."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import RELEASE_NAMESPACE, VALUE_SETS, chart, of_kind, one, render
from helm_python.errors import HelmValuesError

# (apiGroup, resource) → verbs, written from the operator's API contract.
EXPERIMENT_ALLOW: dict[tuple[str, str], set[str]] = {
    ("mlrollouts.dev", "modelexperiments"): {"get", "list", "watch", "patch", "update"},
    ("mlrollouts.dev", "modelexperiments/status"): {"get", "list", "watch", "patch", "update"},
    ("mlrollouts.dev", "metrictemplates"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    # routes and replicas: server-side apply is a PATCH; nothing PUTs them any more
    ("networking.istio.io", "virtualservices"): {"get", "list", "watch", "patch"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "list", "watch", "patch"},
    ("serving.kserve.io", "inferenceservices"): {"get", "patch"},  # canaryTrafficPercent, JSON patch only
    ("apps", "deployments"): {"get", "list", "watch"},
    ("apps", "deployments/scale"): {"get", "patch"},
}
PEERING_VERBS = {"get", "list", "watch", "patch"}
CLUSTER_TEMPLATES_ALLOW = {("mlrollouts.dev", "clustermetrictemplates"): {"get", "list", "watch"}}
CLUSTER_ALLOW = EXPERIMENT_ALLOW | CLUSTER_TEMPLATES_ALLOW | {("kopf.dev", "clusterkopfpeerings"): PEERING_VERBS}
NAMESPACE_ALLOW = EXPERIMENT_ALLOW | {("kopf.dev", "kopfpeerings"): PEERING_VERBS}
LEASE_ALLOW = {("coordination.k8s.io", "leases"): {"get", "list", "watch", "create", "update"}}
PEERING_OFF = {"sharding": {"enabled": False}}  # kopf peering (and its RBAC) only without active-active sharding


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """Flatten rules to (group, resource) → verbs, refusing wildcards and non-resource URLs."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def assert_within(granted: dict[tuple[str, str], set[str]], allowed: dict[tuple[str, str], set[str]]) -> None:
    for key, verbs in granted.items():
        assert key in allowed, f"{key} is not something the operator uses"
        assert verbs <= allowed[key], f"{key}: {sorted(verbs - allowed[key])} beyond the contract"


@pytest.mark.parametrize(
    ("values", "allowed"), [({}, EXPERIMENT_ALLOW | CLUSTER_TEMPLATES_ALLOW), (PEERING_OFF, CLUSTER_ALLOW)]
)
def test_cluster_role_grants_only_the_allow_set(values: dict[str, Any], allowed: dict) -> None:
    objects = render(values)
    granted = grants(one(objects, "ClusterRole", "rel-mlrollouts"))
    assert_within(granted, allowed)
    assert granted == allowed  # and everything the operator needs is there
    binding = one(objects, "ClusterRoleBinding", "rel-mlrollouts")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-mlrollouts", "namespace": RELEASE_NAMESPACE}]


def test_by_default_no_secret_can_be_read_anywhere() -> None:
    for values in ({}, {"watchNamespaces": ["a", "b"]}):
        for kind in ("ClusterRole", "Role"):
            for role in of_kind(render(values), kind):
                assert ("", "secrets") not in grants(role), f"{kind} {role['metadata']['name']} reads Secrets"


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["a", "b"]}])
def test_secrets_are_read_only_by_the_allowed_names(values: dict[str, Any]) -> None:
    objects = render({**values, "prometheus": {"secretNames": ["prom-token", "prom-ca"]}})
    roles = [
        r
        for r in of_kind(objects, "ClusterRole") + of_kind(objects, "Role")
        if r["metadata"]["name"] == "rel-mlrollouts"
    ]
    assert roles
    for role in roles:
        (rule,) = [r for r in role["rules"] if "secrets" in r["resources"]]
        assert rule == {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": ["prom-token", "prom-ca"],
        }


def test_leases_are_confined_to_the_release_namespace() -> None:
    for values in VALUE_SETS.values():
        role = one(render(values), "Role", "rel-mlrollouts-leases")
        assert role["metadata"]["namespace"] == RELEASE_NAMESPACE
        assert grants(role) == LEASE_ALLOW


@pytest.mark.parametrize(("values", "allowed"), [({}, EXPERIMENT_ALLOW), (PEERING_OFF, NAMESPACE_ALLOW)])
def test_namespaced_mode_has_one_role_per_namespace_and_reads_only_cluster_templates_cluster_wide(
    values: dict, allowed: dict
) -> None:
    objects = render({**VALUE_SETS["namespaced"], **values})
    (cluster_role,) = of_kind(objects, "ClusterRole")
    assert grants(cluster_role) == CLUSTER_TEMPLATES_ALLOW
    (cluster_binding,) = of_kind(objects, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert cluster_binding["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": "rel-mlrollouts",
        "namespace": RELEASE_NAMESPACE,
    }
    roles = [r for r in of_kind(objects, "Role") if r["metadata"]["name"] == "rel-mlrollouts"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    for role in roles:
        assert grants(role) == allowed
    bindings = [b for b in of_kind(objects, "RoleBinding") if b["metadata"]["name"] == "rel-mlrollouts"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == RELEASE_NAMESPACE


def test_rbac_create_false_renders_no_rbac() -> None:
    kinds = {o["kind"] for o in render({"rbac": {"create": False}})}
    assert kinds.isdisjoint({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "two"}, "/replicaCount': got string, want integer"),
        ({"watchNamespaces": "ml"}, "/watchNamespaces': got string, want array"),
        ({"replicaz": 2}, "additional properties 'replicaz' not allowed"),
        ({"image": {"repository": "x", "tag": 3}}, "/image/tag': got number, want string"),
        ({"gateway": {"enabled": "yes"}}, "/gateway/enabled': got string, want boolean"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"sharding": {"shards": 0}}, "/sharding/shards"),
        ({"sharding": {"leaseDuration": "15s"}}, "/sharding/leaseDuration': got string, want number"),
    ],
)
def test_values_breaking_the_schema_are_rejected_on_render(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(HelmValuesError) as raised:
        chart().render(values, name="rel", namespace=RELEASE_NAMESPACE)
    assert complaint in str(raised.value)


def test_schema_accepts_the_documented_defaults_and_scripted_keys() -> None:
    scripted = {
        "replicaCount": 3,
        "image": {"repository": "r", "tag": "t"},
        "watchNamespaces": ["ml"],
        "gateway": {"enabled": False},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "grafana": {"dashboard": {"enabled": True}},
    }
    chart().validate_schema(scripted)
    chart().validate_schema(chart().values)

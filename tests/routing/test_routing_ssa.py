"""Server-side apply: the operator sends only the fields it owns, as field manager `mlrollouts`, and fields that
another manager (Argo CD, kubectl) owns on the same object keep their value and their manager.

This is what lets Argo CD users write `managedFieldsManagers: [mlrollouts]` (docs/argocd.md). The managedFields
assertions need the real API server (the emulator keeps none); the rest runs on either backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from routing_objects import (
    CHALLENGER,
    CHAMPION,
    NAMESPACE,
    RoutingCluster,
    ValidatingFake,
    backend,
    deployment,
    http_route,
    managed_and_unmanaged_routes,
    virtual_service,
)

from mlrollouts.api.spec import GatewayApiTraffic, IstioTraffic, ServiceTraffic
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.gatewayapi import GatewayApiRouter
from mlrollouts.routing.istio import IstioRouter
from mlrollouts.routing.kube import FIELD_MANAGER, KubeObjects
from mlrollouts.routing.service import ServiceRouter

ISTIO = ("networking.istio.io", "v1", NAMESPACE, "virtualservices")
GATEWAY_API = ("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes")
ARGOCD = "argocd-controller"
LABELS = {"app.kubernetes.io/instance": "churn", "argocd.argoproj.io/instance": "churn"}


def fields_of(obj: dict[str, Any], manager: str) -> dict[str, Any]:
    """The fieldsV1 of `manager`'s entries, merged ({} when it owns nothing)."""
    merged: dict[str, Any] = {}
    for entry in obj["metadata"].get("managedFields") or []:
        if entry["manager"] == manager:
            assert entry["operation"] == "Apply" or manager != FIELD_MANAGER, entry
            merged |= entry.get("fieldsV1") or {}
    return merged


def argocd_apply(custom: kubernetes.client.CustomObjectsApi, coordinates: tuple[str, ...], body: dict) -> None:
    """What an Argo CD sync with ServerSideApply=true sends: the whole manifest, as manager argocd-controller."""
    body = {**body, "metadata": {**body["metadata"], "labels": LABELS}}
    custom.patch_namespaced_custom_object(
        *coordinates,
        body["metadata"]["name"],
        body,
        field_manager=ARGOCD,
        force=True,
        _content_type="application/apply-patch+yaml",
    )


@pytest.fixture
def live(routing_cluster: RoutingCluster, kube_api: kubernetes.client.ApiClient) -> Iterator[KubeObjects]:
    client = KubeObjects.from_kubeconfig(str(routing_cluster.kubeconfig))
    try:
        yield client
    finally:
        client.close()


async def test_istio_apply_sends_only_spec_http_with_the_version_read(objects: ValidatingFake) -> None:
    objects.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    router = IstioRouter(objects, NAMESPACE, [CHAMPION, CHALLENGER], IstioTraffic(virtual_service="churn"))
    await router.apply(Split({"churn-v2": 90, "churn-v3": 10}), None)
    [(_, body, force)] = objects.applied
    assert body["metadata"] == {"name": "churn", "namespace": NAMESPACE, "resourceVersion": "1"}
    assert set(body) == {"apiVersion", "kind", "metadata", "spec"} and set(body["spec"]) == {"http"}
    assert force  # documented in routing/common.update_object: the author owns the atomic list at creation
    assert body["kind"] == "VirtualService"
    assert (
        body["spec"]["http"]
        == objects.stored("networking.istio.io/v1", "virtualservices", NAMESPACE, "churn")["spec"]["http"]
    )


async def test_istio_weights_are_owned_by_mlrollouts_and_argocd_keeps_its_fields(
    routing_cluster: RoutingCluster, live: KubeObjects, kube_api: kubernetes.client.ApiClient
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    argocd_apply(custom, ISTIO, virtual_service(managed_and_unmanaged_routes()))
    router = IstioRouter(live, NAMESPACE, [CHAMPION, CHALLENGER], IstioTraffic(virtual_service="churn"))

    applied = await router.apply(Split({"churn-v2": 80, "churn-v3": 20}), Mirror(("churn-v3",), 10))

    stored = custom.get_namespaced_custom_object(*ISTIO, "churn")
    assert applied.changed and stored["spec"]["http"][1]["route"][1]["weight"] == 20
    assert stored["metadata"]["labels"] == LABELS
    assert (stored["spec"]["hosts"], stored["spec"]["gateways"]) == (["churn.ml.svc.cluster.local"], ["mesh"])
    # a kubectl user labels the object afterwards; the next write leaves the label alone
    custom.patch_namespaced_custom_object(*ISTIO, "churn", {"metadata": {"labels": {"team": "ml"}}})
    await router.apply(Split({"churn-v2": 50, "churn-v3": 50}), None)
    stored = custom.get_namespaced_custom_object(*ISTIO, "churn")
    assert stored["metadata"]["labels"] == LABELS | {"team": "ml"}
    if not routing_cluster.real:
        pytest.skip("the emulator keeps no managedFields; values checked above")
    assert fields_of(stored, FIELD_MANAGER) == {"f:spec": {"f:http": {}}}
    argocd = fields_of(stored, ARGOCD)
    assert set(argocd["f:spec"]) == {"f:hosts", "f:gateways"}  # spec.http moved to mlrollouts, nothing else
    assert set(argocd["f:metadata"]["f:labels"]) == {f"f:{key}" for key in LABELS}


async def test_gateway_api_weights_are_owned_by_mlrollouts_and_argocd_keeps_its_fields(
    routing_cluster: RoutingCluster, live: KubeObjects, kube_api: kubernetes.client.ApiClient
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    argocd_apply(custom, GATEWAY_API, http_route([{"backendRefs": [backend("churn-v2", 1)]}]))
    router = GatewayApiRouter(live, NAMESPACE, [CHAMPION, CHALLENGER], GatewayApiTraffic(http_route="churn"))

    await router.apply(Split({"churn-v2": 90, "churn-v3": 10}), None)

    stored = custom.get_namespaced_custom_object(*GATEWAY_API, "churn")
    assert [ref["weight"] for ref in stored["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    assert stored["spec"]["parentRefs"][0]["name"] == "public" and stored["metadata"]["labels"] == LABELS
    # Argo CD syncs again with RespectIgnoreDifferences=true: it sends the live rules, so nothing moves back
    argocd_apply(custom, GATEWAY_API, http_route(stored["spec"]["rules"]))
    assert (await router.current_split()).split == Split({"churn-v2": 90, "churn-v3": 10})
    if not routing_cluster.real:
        pytest.skip("the emulator keeps no managedFields; values checked above")
    assert fields_of(stored, FIELD_MANAGER) == {"f:spec": {"f:rules": {}}}
    assert set(fields_of(stored, ARGOCD)["f:spec"]) == {"f:parentRefs"}


async def test_deployment_replicas_are_the_only_field_mlrollouts_owns(
    routing_cluster: RoutingCluster, live: KubeObjects, kube_api: kubernetes.client.ApiClient
) -> None:
    apps = kubernetes.client.AppsV1Api(kube_api)
    for name, count in (("churn-v2", 4), ("churn-v3", 0)):
        apps.create_namespaced_deployment(NAMESPACE, deployment(name, count), field_manager="kubectl-client-side-apply")
    router = ServiceRouter(live, NAMESPACE, [CHAMPION, CHALLENGER], ServiceTraffic(name="churn", total_replicas=4))

    await router.apply(Split({"churn-v2": 75, "churn-v3": 25}), None)

    stored = kube_api.sanitize_for_serialization(apps.read_namespaced_deployment("churn-v3", NAMESPACE))
    assert stored["spec"]["replicas"] == 1
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/churn-v3:1"
    if not routing_cluster.real:
        pytest.skip("the emulator keeps no managedFields; values checked above")
    assert fields_of(stored, FIELD_MANAGER) == {"f:spec": {"f:replicas": {}}}
    kubectl = fields_of(stored, "kubectl-client-side-apply")
    assert "f:replicas" not in kubectl["f:spec"] and {"f:selector", "f:template"} <= set(kubectl["f:spec"])

"""Each router over HTTP against `routing_cluster`: the real kube-apiserver with the upstream Istio and Gateway API
CRDs when it is built (so the server validates every write), the emulator otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest
from routing_objects import (
    CHALLENGER,
    CHAMPION,
    NAMESPACE,
    RoutingCluster,
    backend,
    deployment,
    destination,
    http_route,
    managed_and_unmanaged_routes,
    virtual_service,
)

from mlrollouts.api.spec import GatewayApiTraffic, IstioTraffic, ServiceTraffic
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.gatewayapi import GatewayApiRouter
from mlrollouts.routing.istio import IstioRouter
from mlrollouts.routing.kube import ApiRequestFailed, KubeObjects, ObjectConflict, ObjectNotFound
from mlrollouts.routing.service import ServiceRouter
from schema_validation import validate_custom_object

pytestmark = pytest.mark.integration
ISTIO = ("networking.istio.io", "v1", NAMESPACE, "virtualservices")
GATEWAY_API = ("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes")


@pytest.fixture
def objects(routing_cluster: RoutingCluster, kube_api: kubernetes.client.ApiClient) -> Iterator[KubeObjects]:
    client = KubeObjects.from_kubeconfig(str(routing_cluster.kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def custom(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api)


def get_vs(custom: kubernetes.client.CustomObjectsApi) -> dict:
    return custom.get_namespaced_custom_object(*ISTIO, "churn")


def weights(refs: list[dict]) -> list[tuple[str, int]]:
    return [(ref["name"], ref["weight"]) for ref in refs]


async def test_istio_router_over_http(objects: KubeObjects, custom: kubernetes.client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(*ISTIO, virtual_service(managed_and_unmanaged_routes()))
    admin_before = get_vs(custom)["spec"]["http"][0]
    router = IstioRouter(objects, NAMESPACE, [CHAMPION, CHALLENGER], IstioTraffic(virtual_service="churn"))

    applied = await router.apply(Split({"churn-v2": 90, "churn-v3": 10}), Mirror(("churn-v3",), 20))

    assert applied.split == Split({"churn-v2": 90, "churn-v3": 10}) and applied.mirror == Mirror(("churn-v3",), 20)
    stored = get_vs(custom)
    validate_custom_object(stored)
    admin, predict = stored["spec"]["http"][0], stored["spec"]["http"][1]
    assert admin["match"] == admin_before["match"] and admin["retries"] == admin_before["retries"]
    assert predict["route"] == [destination("churn-v2", 90), destination("churn-v3", 10)]
    assert predict["mirrorPercentage"] == {"value": 20.0}

    # someone edits the route by hand: current_split sees it, apply repairs it
    predict_edit = [{"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 40}]
    await objects.patch("networking.istio.io/v1", "virtualservices", NAMESPACE, "churn", predict_edit, "json")
    assert not (await router.current_split()).consistent
    repaired = await router.apply(Split({"churn-v2": 90, "churn-v3": 10}), Mirror(("churn-v3",), 20))
    assert repaired.changed and repaired.consistent
    assert get_vs(custom)["spec"]["http"][1]["route"][0]["weight"] == 90

    await router.restore()
    restored = await router.current_split()
    assert restored.split == Split({"churn-v2": 100, "churn-v3": 0}) and restored.mirror is None


async def test_gateway_api_router_over_http(objects: KubeObjects, custom: kubernetes.client.CustomObjectsApi) -> None:
    rules = [{"backendRefs": [backend("churn-v2")]}, {"backendRefs": [backend("churn-v2", 1)]}]
    custom.create_namespaced_custom_object(*GATEWAY_API, http_route(rules))
    first_rule = custom.get_namespaced_custom_object(*GATEWAY_API, "churn")["spec"]["rules"][0]  # with defaults
    router = GatewayApiRouter(objects, NAMESPACE, [CHAMPION, CHALLENGER], GatewayApiTraffic(http_route="churn", rule=1))

    applied = await router.apply(Split({"churn-v2": 75, "churn-v3": 25}), Mirror(("churn-v3",), 10))

    stored = custom.get_namespaced_custom_object(*GATEWAY_API, "churn")
    validate_custom_object(stored)
    assert stored["spec"]["rules"][0] == first_rule
    assert weights(stored["spec"]["rules"][1]["backendRefs"]) == [("churn-v2", 75), ("churn-v3", 25)]
    assert applied.mirror == Mirror(("churn-v3",), 10)


async def test_service_router_scales_the_deployments(
    objects: KubeObjects, kube_api: kubernetes.client.ApiClient
) -> None:
    apps = kubernetes.client.AppsV1Api(kube_api)
    for name, count in (("churn-v2", 10), ("churn-v3", 0)):
        apps.create_namespaced_deployment(NAMESPACE, deployment(name, count))
    router = ServiceRouter(objects, NAMESPACE, [CHAMPION, CHALLENGER], ServiceTraffic(name="churn", total_replicas=10))

    applied = await router.apply(Split({"churn-v2": 95, "churn-v3": 5}), None)

    assert applied.message == "10 replicas: 9/1 → 90/10, requested 95/5"
    counts = [apps.read_namespaced_deployment(n, NAMESPACE).spec.replicas for n in ("churn-v2", "churn-v3")]
    assert counts == [9, 1]


async def test_kube_objects_errors_name_the_object(
    objects: KubeObjects, custom: kubernetes.client.CustomObjectsApi
) -> None:
    router = IstioRouter(objects, NAMESPACE, [CHAMPION, CHALLENGER], IstioTraffic(virtual_service="churn"))
    with pytest.raises(RoutingError, match=r"VirtualService ml/churn not found: .*spec.traffic.istio.virtualService"):
        await router.current_split()

    created = custom.create_namespaced_custom_object(*ISTIO, virtual_service([]))
    await objects.patch("networking.istio.io/v1", "virtualservices", NAMESPACE, "churn", {"spec": {"gateways": None}})
    with pytest.raises(ObjectConflict, match="VirtualService ml/churn changed"):
        await objects.replace("networking.istio.io/v1", "virtualservices", NAMESPACE, "churn", created)
    stale = {**created, "metadata": {**created["metadata"], "managedFields": None}, "spec": {"http": []}}
    with pytest.raises(ObjectConflict, match="VirtualService ml/churn changed"):
        await objects.apply("networking.istio.io/v1", "virtualservices", NAMESPACE, "churn", stale, force=True)

    # deleted between our read and our write: an apply would create a VirtualService of spec.http alone. The
    # routers send the uid they read (the server refuses: 409); without one, KubeObjects undoes the create.
    custom.delete_namespaced_custom_object(*ISTIO, "churn")
    with pytest.raises((ObjectConflict, ObjectNotFound)):  # the emulator ignores the uid: the undo path
        await objects.apply("networking.istio.io/v1", "virtualservices", NAMESPACE, "churn", stale, force=True)
    without_uid = {**stale, "metadata": {"name": "churn", "namespace": NAMESPACE}}
    with pytest.raises(ObjectNotFound, match="VirtualService ml/churn not found"):
        await objects.apply("networking.istio.io/v1", "virtualservices", NAMESPACE, "churn", without_uid, force=True)
    assert custom.list_namespaced_custom_object(*ISTIO)["items"] == []
    with pytest.raises(ObjectNotFound, match="Deployment ml/churn-v9 not found"):
        await objects.apply_scale(NAMESPACE, "churn-v9", 3)


async def test_the_server_refuses_a_route_the_crd_does_not_allow(
    routing_cluster: RoutingCluster, objects: KubeObjects, custom: kubernetes.client.CustomObjectsApi
) -> None:
    """Writes are validated by the server against the upstream CRD; the error names the field, nothing changes."""
    if not routing_cluster.real:
        pytest.skip("the emulator does not validate custom objects against their CRD schema")
    custom.create_namespaced_custom_object(*GATEWAY_API, http_route([{"backendRefs": [backend("churn-v2", 1)]}]))
    before = custom.get_namespaced_custom_object(*GATEWAY_API, "churn")
    too_heavy = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "churn", "namespace": NAMESPACE},
        "spec": {"rules": [{"backendRefs": [backend("churn-v2", 2_000_000)]}]},  # the CRD's maximum is 1000000
    }
    with pytest.raises(ApiRequestFailed, match=r"HTTP 422.*spec.rules\[0\].backendRefs\[0\].weight") as refused:
        await objects.apply("gateway.networking.k8s.io/v1", "httproutes", NAMESPACE, "churn", too_heavy, force=True)
    assert refused.value.http_status == 422
    assert custom.get_namespaced_custom_object(*GATEWAY_API, "churn") == before

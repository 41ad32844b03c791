"""Each router over real HTTP: KubeObjects built from the local emulator's kubeconfig, upstream CRDs installed."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from routing_objects import (
    CHALLENGER,
    CHAMPION,
    NAMESPACE,
    backend,
    deployment,
    destination,
    http_route,
    managed_and_unmanaged_routes,
    virtual_service,
)

from mlrollouts.api.spec import GatewayApiTraffic, IstioTraffic, ServiceTraffic
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.localstack.fixtures import emulated_apiserver as local_apiserver
from mlrollouts.localstack.fixtures import k8s_api_client
from mlrollouts.localstack.server import LocalApiServer
from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.gatewayapi import GatewayApiRouter
from mlrollouts.routing.istio import IstioRouter
from mlrollouts.routing.kube import KubeObjects, ObjectConflict
from mlrollouts.routing.service import ServiceRouter
from schema_validation import crd_documents, validate_custom_object

pytestmark = pytest.mark.integration
# The emulator (emulated_apiserver) until this suite moves to the real server with server-side apply.
__all__ = ["k8s_api_client", "local_apiserver"]


@pytest.fixture
def cluster(local_apiserver: LocalApiServer) -> LocalApiServer:
    for filename in ("istio-networking.crd.yaml", "gateway-api-httproutes.crd.yaml"):
        for crd in crd_documents(filename):
            local_apiserver.install_crd(copy.deepcopy(crd))
    local_apiserver.ensure_namespace(NAMESPACE)
    return local_apiserver


@pytest.fixture
def objects(cluster: LocalApiServer) -> Iterator[KubeObjects]:
    assert cluster.kubeconfig is not None
    client = KubeObjects.from_kubeconfig(str(Path(cluster.kubeconfig)))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def custom(cluster: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(k8s_api_client)


def get_vs(custom: kubernetes.client.CustomObjectsApi) -> dict:
    return custom.get_namespaced_custom_object("networking.istio.io", "v1", NAMESPACE, "virtualservices", "churn")


async def test_istio_router_over_http(objects: KubeObjects, custom: kubernetes.client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", NAMESPACE, "virtualservices", virtual_service(managed_and_unmanaged_routes())
    )
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
    custom.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", http_route(rules)
    )
    router = GatewayApiRouter(objects, NAMESPACE, [CHAMPION, CHALLENGER], GatewayApiTraffic(http_route="churn", rule=1))

    applied = await router.apply(Split({"churn-v2": 75, "churn-v3": 25}), Mirror(("churn-v3",), 10))

    stored = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", "churn")
    validate_custom_object(stored)
    assert stored["spec"]["rules"][0] == rules[0]
    assert stored["spec"]["rules"][1]["backendRefs"] == [backend("churn-v2", 75), backend("churn-v3", 25)]
    assert applied.mirror == Mirror(("churn-v3",), 10)


async def test_service_router_scales_through_the_scale_subresource(
    objects: KubeObjects, k8s_api_client: kubernetes.client.ApiClient
) -> None:
    apps = kubernetes.client.AppsV1Api(k8s_api_client)
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

    created = custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", NAMESPACE, "virtualservices", virtual_service([])
    )
    await objects.patch("networking.istio.io/v1", "virtualservices", NAMESPACE, "churn", {"spec": {"gateways": None}})
    with pytest.raises(ObjectConflict, match="VirtualService ml/churn changed"):
        await objects.replace("networking.istio.io/v1", "virtualservices", NAMESPACE, "churn", created)

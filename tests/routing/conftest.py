"""Routing fixtures: a validating in-memory fake for the patch logic, and an API server for the HTTP tests.

`routing_cluster` is the real kube-apiserver + etcd when `make controlplane` built them (the server validates
every route write against the upstream Istio and Gateway API CRDs and records managedFields), the emulator
otherwise; MLROLLOUTS_TEST_BACKEND decides, as for every suite. One server per session; each test gets the `ml`
namespace emptied of routes and Deployments."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import kubernetes
import pytest
from routing_objects import NAMESPACE, RoutingCluster, ValidatingFake

from mlrollouts.localstack import testbackend
from mlrollouts.localstack.realcluster import SCHEMAS, RealApiServer
from mlrollouts.localstack.server import run_apiserver

ROUTE_CRDS = (SCHEMAS / "istio-networking.crd.yaml", SCHEMAS / "gateway-api-httproutes.crd.yaml")
ROUTE_KINDS = (
    ("networking.istio.io", "v1", "virtualservices"),
    ("gateway.networking.k8s.io", "v1", "httproutes"),
)


@pytest.fixture
def objects() -> ValidatingFake:
    return ValidatingFake()


@pytest.fixture(scope="session")
def routing_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoutingCluster]:
    kubeconfig = tmp_path_factory.mktemp("routing-cluster") / "kubeconfig"
    backend = testbackend.resolve()  # MLROLLOUTS_TEST_BACKEND, as every other suite
    if backend == "real":
        server: RealApiServer | object = RealApiServer(kubeconfig_path=kubeconfig).start()
    else:
        server = run_apiserver(0, kubeconfig, crd_paths=ROUTE_CRDS)
    try:
        api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        with contextlib.closing(api), contextlib.suppress(kubernetes.client.ApiException):  # already there
            kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        yield RoutingCluster(backend, kubeconfig)
    finally:
        server.stop()  # type: ignore[attr-defined]


@pytest.fixture
def kube_api(routing_cluster: RoutingCluster) -> Iterator[kubernetes.client.ApiClient]:
    """An admin client; at teardown the test's routes and Deployments go, so the next test starts clean."""
    api = kubernetes.config.new_client_from_config(config_file=str(routing_cluster.kubeconfig))
    try:
        yield api
    finally:
        custom, apps = kubernetes.client.CustomObjectsApi(api), kubernetes.client.AppsV1Api(api)
        for group, version, plural in ROUTE_KINDS:
            custom.delete_collection_namespaced_custom_object(group, version, NAMESPACE, plural)
        apps.delete_collection_namespaced_deployment(NAMESPACE)
        api.close()

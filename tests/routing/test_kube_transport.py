"""The async transport (KubeObjects on kubernetes.aio) against the API server: each refusal becomes the exception
the ticks and routers act on. 404 → ObjectNotFound (the router names the spec field), 409 and a failed JSON-patch
`test` → ObjectConflict (re-read, no error status), any other refusal → ApiRequestFailed with its HTTP status (a
schema's 422 included: re-reading cannot fix it), an unreachable server → RoutingError naming the request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kubernetes
import pytest
from routing_objects import NAMESPACE, RoutingCluster

from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.kube import (
    ApiRequestFailed,
    ApiUnreachable,
    KubeObjects,
    ObjectConflict,
    ObjectNotFound,
    is_transient,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def objects(routing_cluster: RoutingCluster, kube_api: kubernetes.client.ApiClient) -> AsyncIterator[KubeObjects]:
    client = KubeObjects.from_kubeconfig(str(routing_cluster.kubeconfig))
    try:
        yield client
    finally:
        await client.aclose()


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    container = {"name": "model", "image": "registry.example/model:1"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


async def test_a_missing_object_is_not_found_naming_it(objects: KubeObjects) -> None:
    with pytest.raises(ObjectNotFound) as missing:
        await objects.get("apps/v1", "deployments", NAMESPACE, "absent")
    assert (missing.value.plural, missing.value.namespace, missing.value.name) == ("deployments", NAMESPACE, "absent")
    assert str(missing.value) == f"Deployment {NAMESPACE}/absent not found"
    with pytest.raises(ObjectNotFound):
        await objects.patch("apps/v1", "deployments", NAMESPACE, "absent", {"metadata": {"labels": {"a": "b"}}})


async def test_a_write_over_a_newer_version_is_a_conflict(objects: KubeObjects) -> None:
    created = await objects.create("apps/v1", "deployments", NAMESPACE, deployment("stale"))
    await objects.patch("apps/v1", "deployments", NAMESPACE, "stale", {"metadata": {"labels": {"edited": "yes"}}})
    stale = {**created, "metadata": {**created["metadata"], "labels": {"mine": "yes"}}}
    with pytest.raises(ObjectConflict, match="stale changed"):  # HTTP 409 on the PUT
        await objects.replace("apps/v1", "deployments", NAMESPACE, "stale", stale)
    with pytest.raises(ObjectConflict):  # 409 AlreadyExists on a second create
        await objects.create("apps/v1", "deployments", NAMESPACE, deployment("stale"))
    current = await objects.get("apps/v1", "deployments", NAMESPACE, "stale")
    assert current["metadata"]["labels"] == {"edited": "yes"}  # the refused write changed nothing


async def test_a_failed_patch_test_is_a_conflict_and_a_schema_refusal_is_not(
    objects: KubeObjects, routing_cluster: RoutingCluster
) -> None:
    created = await objects.create("apps/v1", "deployments", NAMESPACE, deployment("guarded"))
    version = created["metadata"]["resourceVersion"]
    await objects.patch("apps/v1", "deployments", NAMESPACE, "guarded", {"metadata": {"labels": {"x": "1"}}})
    guard = {"op": "test", "path": "/metadata/resourceVersion", "value": version}
    stale = [guard, {"op": "add", "path": "/spec/replicas", "value": 2}]
    with pytest.raises(ObjectConflict, match="changed since it was read"):
        await objects.patch("apps/v1", "deployments", NAMESPACE, "guarded", stale, "json")
    if not routing_cluster.real:
        pytest.skip("the emulator does not validate built-in objects (localstack/__init__.py); the conflict held")
    fresh = (await objects.get("apps/v1", "deployments", NAMESPACE, "guarded"))["metadata"]["resourceVersion"]
    invalid = [{**guard, "value": fresh}, {"op": "add", "path": "/spec/replicas", "value": -1}]
    with pytest.raises(ApiRequestFailed) as refused:
        await objects.patch("apps/v1", "deployments", NAMESPACE, "guarded", invalid, "json")
    assert not isinstance(refused.value, ObjectConflict)
    assert refused.value.http_status == 422 and "spec.replicas" in str(refused.value)
    assert (await objects.get_scale(NAMESPACE, "guarded")) == 1


async def test_other_refusals_keep_their_status(objects: KubeObjects, routing_cluster: RoutingCluster) -> None:
    if not routing_cluster.real:
        pytest.skip("the emulator does not validate built-in objects (localstack/__init__.py)")
    with pytest.raises(ApiRequestFailed) as refused:  # a name the API server refuses: 422, no patch involved
        await objects.create("apps/v1", "deployments", NAMESPACE, deployment("Not_A_Name"))
    assert refused.value.http_status == 422 and "Not_A_Name" in str(refused.value)


def test_one_client_serves_successive_event_loops(
    routing_cluster: RoutingCluster, kube_api: kubernetes.client.ApiClient
) -> None:
    """The CLI and tests call it from several asyncio.run()s; each loop gets its own session."""
    objects = KubeObjects.from_kubeconfig(str(routing_cluster.kubeconfig))
    try:
        asyncio.run(objects.create("apps/v1", "deployments", NAMESPACE, deployment("loops")))
        assert asyncio.run(objects.get_scale(NAMESPACE, "loops")) == 1
        assert asyncio.run(objects.apply_scale(NAMESPACE, "loops", 3)) == 3
    finally:
        objects.close()


async def test_an_unreachable_api_server_is_a_transient_routing_error_naming_the_request(objects: KubeObjects) -> None:
    configuration = objects._configuration
    unreachable = type(configuration)()
    unreachable.host = "https://127.0.0.1:9"  # discard port: nothing listens
    unreachable.ssl_ca_cert = configuration.ssl_ca_cert
    client = KubeObjects(unreachable, timeout_seconds=2)
    try:
        request = f"GET /apis/apps/v1/namespaces/{NAMESPACE}/deployments/x"
        with pytest.raises(ApiUnreachable, match=f"{request}: Kubernetes API unreachable") as caught:
            await client.get("apps/v1", "deployments", NAMESPACE, "x")
        assert isinstance(caught.value, RoutingError) and is_transient(caught.value)  # retried with backoff
    finally:
        await client.aclose()


async def test_a_proxy_in_the_environment_is_not_used(objects: KubeObjects, monkeypatch: pytest.MonkeyPatch) -> None:
    """As kopf's own watches of the same API server: no proxy (and no .netrc) from the environment, which aiohttp
    otherwise looked up in worker threads on every request."""
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # discard port: a request sent there would fail
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ObjectNotFound):  # the API server's own answer
        await objects.get("apps/v1", "deployments", NAMESPACE, "absent")


def test_throttling_and_server_errors_are_transient_and_refusals_are_not() -> None:
    """429 and 5xx are the API server's trouble (retried with backoff, reason ApiUnavailable); a 403 or a schema's
    422 would fail again unchanged (Forbidden, RoutingFailed)."""
    assert all(is_transient(ApiRequestFailed("x", status)) for status in (429, 500, 502, 503, 504))
    assert not any(is_transient(ApiRequestFailed("x", status)) for status in (400, 403, 404, 422))
    assert not is_transient(RoutingError("VirtualService default/churn not found"))

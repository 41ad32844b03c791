"""A tiny real kopf operator against the emulator: handlers, timers, status patches, Events, finalizers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kopf
import kubernetes
import pytest

from mlrollouts.localstack.server import LocalApiServer

pytestmark = pytest.mark.integration
GROUP, VERSION, PLURAL = "mlrollouts.dev", "v1alpha1", "modelexperiments"


def build_registry(url: str, deleted: list[str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = "Running"
        kopf.info(body, reason="ExperimentStarted", message="traffic split 90/10")

    @kopf.timer(GROUP, VERSION, PLURAL, interval=0.3, registry=registry)
    def tick(status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
        patch.status["ticks"] = int(status.get("ticks", 0)) + 1

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def restore_champion(name: str, **_: Any) -> None:
        deleted.append(name)

    return registry


def fast_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = 10
    settings.watching.reconnect_backoff = 0.1
    settings.batching.idle_timeout = 0.2
    settings.batching.batch_window = 0.05
    settings.posting.level = logging.INFO
    return settings


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll a blocking check in a thread (the operator shares this loop) until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


async def test_kopf_handlers_status_events_and_finalizer(
    apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient
) -> None:
    custom = kubernetes.client.CustomObjectsApi(k8s_api_client)
    core = kubernetes.client.CoreV1Api(k8s_api_client)
    deleted: list[str] = []
    stop = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=build_registry(apiserver.url, deleted),
            settings=fast_settings(),
            standalone=True,
            clusterwide=True,
            stop_flag=stop,
        )
    )
    try:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelExperiment", "metadata": {"name": "k1"},
                "spec": {"strategy": "canary"}}  # fmt: skip
        await asyncio.to_thread(custom.create_namespaced_custom_object, GROUP, VERSION, "default", PLURAL, body)

        def read() -> dict:
            return custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "k1")

        def status_after_ticks() -> dict | None:
            status = read().get("status", {})
            return status if status.get("phase") == "Running" and status.get("ticks", 0) >= 2 else None

        status = await eventually(status_after_ticks)
        assert status is not None, f"no status from the handlers: {read()}"
        assert read()["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]

        def started_events() -> list:
            events = core.list_namespaced_event("default").items
            return [e for e in events if e.reason == "ExperimentStarted" and e.involved_object.name == "k1"]

        events = await eventually(started_events)
        assert events and events[0].message == "traffic split 90/10"

        await asyncio.to_thread(custom.delete_namespaced_custom_object, GROUP, VERSION, "default", PLURAL, "k1")

        def gone() -> bool:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
            return not listed["items"]

        assert await eventually(gone), f"object not released by the finalizer: {read()}"
        assert deleted == ["k1"]
    finally:
        stop.set()
        await asyncio.wait_for(operator, timeout=15)

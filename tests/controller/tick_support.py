"""The tick's ports over a FakeKubeObjects, wired as the operator wires them, for tests that drive `reconcile`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mlrollouts.api import ModelExperiment
from mlrollouts.controller.tick import TickPorts
from mlrollouts.engine.types import Event
from mlrollouts.routing.factory import make_router
from mlrollouts.routing.fake import FakeKubeObjects

API = "mlrollouts.dev/v1alpha1"


def fake_tick_ports(
    objects: FakeKubeObjects,
    metrics: Any,
    post_event: Callable[[Event], Awaitable[None]],
    clear_annotation: Callable[[str, str, str], Awaitable[None]] | None = None,
) -> TickPorts:
    """Status written as a json patch guarded by the resourceVersion read (so a stale write is refused), the
    router over the same objects, `metrics` for every experiment; annotations cleared by a merge patch unless
    the test says otherwise."""

    async def metrics_for(experiment: ModelExperiment) -> Any:
        return metrics

    async def write_status(namespace: str, name: str, status: dict, version: str | None) -> str | None:
        guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
        patch = [*guard, {"op": "add", "path": "/status", "value": status}]
        written = await objects.patch(API, "modelexperiments", namespace, name, patch, "json")
        return (written.get("metadata") or {}).get("resourceVersion")

    async def remove_annotation(namespace: str, name: str, key: str) -> None:
        removal = {"metadata": {"annotations": {key: None}}}
        await objects.patch(API, "modelexperiments", namespace, name, removal)

    return TickPorts(
        metrics_for=metrics_for,
        router_for=lambda experiment: make_router(experiment, objects),
        write_status=write_status,
        clear_annotation=clear_annotation or remove_annotation,
        post_event=post_event,
        conflict_with=lambda experiment: None,
    )

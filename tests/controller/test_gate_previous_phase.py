"""A gate's body says which phase the experiment left: previousPhase is the phase before the transition that
called it (Progressing for a rollback), not a copy of the phase (docs/notifications.md)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from receiver import Receiver
from stack import canary_manifest, virtual_service_manifest
from tick_support import fake_tick_ports

from mlrollouts.controller import abort
from mlrollouts.controller.ports import Runtime
from mlrollouts.controller.reading import ACTION_ANNOTATION, load
from mlrollouts.controller.tick import reconcile
from mlrollouts.engine.types import Event, Observations
from mlrollouts.hooks.policy import HookPolicy
from mlrollouts.routing.fake import FakeKubeObjects

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


class _NoData:
    async def observe(self, experiment: Any, now: datetime) -> Observations:
        return Observations(now, {})


def _running(receiver: Receiver) -> dict[str, Any]:
    hooks = [{"name": "rb", "type": "onRollback", "url": f"{receiver.address}/rb"}]
    body = canary_manifest("gated", "http://127.0.0.1:9", steps=[30, 100], webhooks=hooks)
    body["metadata"].update(uid="u-1", generation=1, annotations={ACTION_ANNOTATION: "rollback"})
    body["status"] = {
        "phase": "Progressing",
        "step": 0,
        "observedGeneration": 1,
        "strategy": "canary",
        "weights": {"churn-v2": 70, "churn-v3": 30},
    }
    return body


def test_a_rollbacks_on_rollback_gate_gets_the_phase_it_rolled_back_from(receiver: Receiver) -> None:
    objects = FakeKubeObjects()
    objects.add("virtualservices", virtual_service_manifest("churn", "churn-v2", "churn-v3"))
    body = objects.add("modelexperiments", _running(receiver))
    runtime = Runtime(objects, hooks=HookPolicy(gate_addresses=(receiver.address,)))
    events: list[Event] = []

    async def post(event: Event) -> None:
        events.append(event)

    async def run() -> None:
        ports = dataclasses.replace(fake_tick_ports(objects, _NoData(), post), call_webhooks=runtime.call_webhooks)
        try:
            result = await reconcile(body, NOW, ports)
            assert result.status["phase"] == "RolledBack"
        finally:
            await runtime.close(0)

    asyncio.run(run())
    (call,) = receiver.to("/rb")
    assert (call.body["previousPhase"], call.body["phase"]) == ("Progressing", "RolledBack")


def test_a_deleted_experiments_on_rollback_gate_gets_the_phase_it_was_deleted_in(receiver: Receiver) -> None:
    body = _running(receiver)
    runtime = Runtime(FakeKubeObjects(), hooks=HookPolicy(gate_addresses=(receiver.address,)))

    async def run() -> None:
        try:
            await abort.announce(body, load(body), runtime)
        finally:
            await runtime.close(0)

    asyncio.run(run())
    (call,) = receiver.to("/rb")
    assert (call.body["previousPhase"], call.body["phase"], call.body["reason"]) == (
        "Progressing",
        "RolledBack",
        "Deleted",
    )

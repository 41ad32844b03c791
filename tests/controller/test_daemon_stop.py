"""Operator shutdown (or the experiment's deletion) stops each analysis loop by its `stopped` flag: the loop
returns by itself, even mid-tick, so kopf never has to cancel it ("Daemon 'analysis_loop' is cancelled. Will
escalate." in every rollout's log)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kopf._cogs.aiokits.aioenums import FlagSetter

from mlrollouts.controller import handlers


class _HungRuntime:
    """A tick that never ends by itself (a Prometheus or API server that stopped answering)."""

    invalid_recheck_interval = 30.0

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.cancelled = False
        self.forgotten = False

    async def read(self, namespace: str, name: str, live: Any = None) -> dict[str, Any]:
        self.reading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten = True


def _body() -> kopf.Body:
    meta = {
        "namespace": "default",
        "name": "hung",
        "finalizers": [handlers.KOPF_FINALIZER],
        "annotations": {handlers.DIFFBASE_ANNOTATION: "{}"},
    }
    return kopf.Body({"metadata": meta, "spec": {}})


def test_a_loop_stopped_mid_tick_returns_by_itself_and_abandons_the_hung_tick() -> None:
    runtime = _HungRuntime()

    async def run() -> None:
        setter: FlagSetter[Any] = FlagSetter()
        memo = kopf.Memo()
        memo.runtime = runtime
        body = _body()
        loop = asyncio.ensure_future(
            handlers.analysis_loop(body=body, meta=body.meta, stopped=setter.async_waiter, memo=memo, routing_claims={})
        )
        await runtime.reading.wait()
        setter.set()
        # A failure budget, not a speed claim: before the fix the loop waited on the hung tick forever.
        await asyncio.wait_for(loop, 30)

    asyncio.run(run())
    assert runtime.cancelled and runtime.forgotten


def test_kopf_gives_the_loop_time_to_return_by_itself() -> None:
    """kopf cancels a daemon at once unless cancellation_backoff gives it time to return by itself."""
    registry = kopf.get_default_registry()
    (handler,) = [h for h in registry._spawning.get_all_handlers() if h.id == "analysis_loop"]
    assert handler.cancellation_backoff is not None and handler.cancellation_backoff > 0

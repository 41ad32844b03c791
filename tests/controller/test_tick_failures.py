"""A failing tick costs one tick: it is counted and retried, and never ends the experiment's analysis loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from mlrollouts.controller import handlers, telemetry
from mlrollouts.controller.retries import RetryBackoff
from mlrollouts.routing.base import RoutingError


class _Runtime:
    invalid_recheck_interval = 30.0

    def __init__(self, read_error: Exception | None = None, ports_error: Exception | None = None) -> None:
        self.read_error, self.ports_error = read_error, ports_error
        self.retries = RetryBackoff(first=7.0, jitter=lambda key: 0.0)

    async def read(self, namespace: str, name: str, live: Any = None) -> dict[str, Any]:
        if self.read_error:
            raise self.read_error
        return {"metadata": {"namespace": namespace, "name": name}, "spec": {}}

    def ports(self, body: dict[str, Any], conflict_with: Any) -> Any:
        raise self.ports_error  # type: ignore[misc]


def _errors(name: str) -> float:
    return telemetry.reconcile_errors.labels("default", name)._value.get()


def test_an_unreachable_api_server_is_retried_after_the_retry_interval() -> None:
    before = _errors("unreachable")
    runtime = _Runtime(read_error=RoutingError("GET /apis/...: Kubernetes API unreachable"))
    assert asyncio.run(handlers._tick(runtime, "default", "unreachable", {})) == 7.0
    assert _errors("unreachable") == before + 1


def test_an_unexpected_error_is_logged_with_its_traceback_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    before = _errors("buggy")
    runtime = _Runtime(ports_error=KeyError("surprise"))
    with caplog.at_level(logging.ERROR, logger="mlrollouts.controller.handlers"):
        assert asyncio.run(handlers._tick(runtime, "default", "buggy", {})) == 7.0
    assert _errors("buggy") == before + 1
    record = next(r for r in caplog.records if "tick failed unexpectedly" in r.getMessage())
    assert record.exc_info is not None and "surprise" in str(record.exc_info[1])


class _Running:
    def __bool__(self) -> bool:  # kopf's DaemonStopped is falsy until the daemon is stopped
        return False

    async def wait(self, timeout: float | None = None) -> _Running:  # never set: waits out the timeout
        await asyncio.sleep(timeout or 0)
        return self


def test_a_new_experiments_first_tick_waits_for_kopfs_own_first_writes() -> None:
    """Otherwise kopf's finalizer and diff-base annotation land between the tick's read and its status write."""
    body: dict[str, Any] = {"metadata": {"name": "new", "finalizers": [], "annotations": {}}}

    async def scenario() -> None:
        waiting = asyncio.ensure_future(handlers._kopf_settled(body, _Running(), limit=600))  # type: ignore[arg-type]
        await asyncio.sleep(2 * handlers.SETTLE_POLL_SECONDS)
        assert not waiting.done()
        body["metadata"] = {
            "finalizers": [handlers.KOPF_FINALIZER],
            "annotations": {handlers.DIFFBASE_ANNOTATION: "{}"},
        }
        await asyncio.wait_for(waiting, 60)

    asyncio.run(scenario())

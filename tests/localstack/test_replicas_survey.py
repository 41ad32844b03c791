"""The replicas' and scaling benchmarks' poller: a loaded API server's transient failures are retried, a real
refusal is not (a LIST that broke midway used to end `make bench`'s scaling run beside `make test`)."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
import urllib3

from mlrollouts.localstack import replicas


class _Objects:
    def __init__(self, *outcomes: Exception | list[dict[str, Any]]) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[dict[str, Any]] = []

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return {"items": outcome}


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(replicas.time, "sleep", waits.append)
    return waits


def test_a_broken_read_and_a_timeout_are_retried_with_backoff(slept: list[float]) -> None:
    broken = urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(4924451 bytes read)")
    objects = _Objects(broken, kubernetes.client.ApiException(status=504), [{"metadata": {"name": "a"}}])
    assert replicas.survey_items(objects) == [{"metadata": {"name": "a"}}]
    assert slept == [1.0, 2.0]
    assert {call.get("resource_version") for call in objects.calls} == {"0"}, "served from the watch cache"


def test_a_refusal_is_not_retried_and_persistent_failure_gives_up(slept: list[float]) -> None:
    with pytest.raises(kubernetes.client.ApiException):
        replicas.survey_items(_Objects(kubernetes.client.ApiException(status=403)))
    assert slept == []
    with pytest.raises(urllib3.exceptions.ProtocolError):
        replicas.survey_items(_Objects(*[urllib3.exceptions.ProtocolError("reset")] * 3), attempts=3)
    assert slept == [1.0, 2.0]

"""The capacity and operator benchmarks' survey: a LIST that a loaded API server broke midway is read again, not
the end of the benchmark (a broken 1.9 MB answer ended `make bench`'s capacity run beside helpers at load 20)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import urllib3

from mlrollouts.localstack import replicas

REPO = Path(__file__).resolve().parents[2]


class _Objects:
    def __init__(self, *outcomes: Exception | list[dict[str, Any]]) -> None:
        self.outcomes = list(outcomes)

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return {"items": outcome}


def test_a_broken_list_is_read_again_and_the_survey_counts_what_it_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import bench_operator

    broken = urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(1851213 bytes read)")
    pending = {"status": {"phase": "Pending", "reason": "MetricsUnavailable"}}
    objects = _Objects(broken, [pending, {"status": {"phase": "Progressing", "reason": "Analysing"}}])
    monkeypatch.setattr(bench_operator.kubernetes.client, "CustomObjectsApi", lambda api: objects)
    monkeypatch.setattr(replicas.time, "sleep", lambda seconds: None)
    tally, ages = bench_operator.survey(object())
    assert tally == {"Pending/MetricsUnavailable": 1, "Progressing/Analysing": 1}
    assert ages == [float("inf"), float("inf")]

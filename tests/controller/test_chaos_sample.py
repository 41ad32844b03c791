"""A sample of `make chaos` in `make test`: one canary on the chaos stack with three cheap fault points (the
operator SIGKILLed between its route write and its status write, the API server cut off, Prometheus
answering 500), the invariants checked after each, then the canary deleted while running.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

pytestmark = pytest.mark.integration
REPO = pathlib.Path(__file__).resolve().parents[2]


def test_a_canary_survives_a_kill_an_api_cut_and_prometheus_errors(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.chaos.faults import ChaosStack, Fault
    from benchmarks.chaos.sweep import SweepResult, run_canary

    faults = [
        Fault("operator-sigkill", delay_s=0.0, duration_s=0.3, at_route_write=True),
        Fault("apiserver-restart", delay_s=0.5, duration_s=1.5),
        Fault("prometheus-errors", delay_s=0.5, duration_s=2.0),
    ]
    result, lines = SweepResult(), []
    with ChaosStack(tmp_path) as chaos:
        # Ten steps (20 s at least): room for the three points before the canary could end.
        steps = [5, 10, 20, 30, 40, 50, 60, 70, 85, 100]
        unused = run_canary(chaos, "sample", faults, result, lines.append, len(faults), "delete running", steps)
    report: Any = "\n".join(lines)
    assert not unused, f"the canary ended before every fault point ran:\n{report}"
    assert [point.kind for point in result.points] == [fault.kind for fault in faults], report
    assert result.violations == 0, report
    assert len(result.canaries) == 1, report

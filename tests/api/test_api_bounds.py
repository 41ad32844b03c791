"""Bounds in the API: interval 5 s - 1 h, durations <= 365 d, counts <= 1e9, bandit floor x arms <= 1, list
sizes before CEL; and `mlrollouts validate` gives the operator's verdict on every probe manifest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from api_support import load_example, python_problems

from mlrollouts.api import crd_validation
from mlrollouts.api.durations import MIN_INTERVAL_ENV
from mlrollouts.api.errors import SpecError
from mlrollouts.cli.api_commands import check_manifest
from mlrollouts.cli.main import main
from mlrollouts.controller.reading import load

Manifest = dict[str, Any]


@pytest.fixture
def default_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The floor a real deployment has: the test session lowers it for its compressed-time stacks."""
    monkeypatch.delenv(MIN_INTERVAL_ENV, raising=False)


def _with(mutate: Callable[[dict[str, Any]], None], example: str = "churn-v3.yaml") -> Manifest:
    manifest = load_example(example)
    mutate(manifest["spec"])
    return manifest


def _interval(value: str) -> Manifest:
    return _with(lambda spec: spec["analysis"].__setitem__("interval", value))


def _paths(manifest: Manifest) -> set[str]:
    return {p.path for p in python_problems(manifest)}


@pytest.mark.parametrize(
    ("interval", "ok"), [("1ms", False), ("4s", False), ("5s", True), ("1h", True), ("61m", False)]
)
def test_interval_is_between_5s_and_1h(default_floor: None, interval: str, ok: bool) -> None:
    assert (_paths(_interval(interval)) == set()) is ok
    if not ok:
        (problem,) = python_problems(_interval(interval))
        assert problem.path == "spec.analysis.interval" and "between 5s and 1h" in problem.message


def test_a_compressed_time_stack_may_lower_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIN_INTERVAL_ENV, "1s")
    assert _paths(_interval("1s")) == set()
    assert _paths(_interval("500ms")) == {"spec.analysis.interval"}
    assert _paths(_interval("10000h")) == {"spec.analysis.interval"}  # the ceiling stays


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("spec.canary.stepDuration", lambda s: s["canary"].__setitem__("stepDuration", "99999999999999999999d")),
        ("spec.analysis.prometheus.timeout", lambda s: s["analysis"]["prometheus"].__setitem__("timeout", "366d")),
        ("spec.canary.stepDuration", lambda s: s["canary"].__setitem__("stepDuration", "8761h")),
    ],
)
def test_durations_are_at_most_365_days(field: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    (problem,) = python_problems(_with(mutate))
    assert problem.path == field and "at most 365d" in problem.message
    assert _paths(_with(lambda s: s["canary"].__setitem__("stepDuration", "365d"))) == set()


@pytest.mark.parametrize("value", [1_000_000_001, 1e30])
def test_counts_are_at_most_a_billion(value: float) -> None:
    canary = _with(lambda s: s["canary"].__setitem__("minSamplesPerStep", value))
    bandit = _with(lambda s: s["bandit"].__setitem__("minSamples", value), "bandit-gateway.yaml")
    assert _paths(canary) == {"spec.canary.minSamplesPerStep"}
    assert "use at most 1000000000" in python_problems(canary)[0].message
    assert _paths(bandit) == {"spec.bandit.minSamples"}
    assert _paths(_with(lambda s: s["canary"].__setitem__("minSamplesPerStep", 1_000_000_000))) == set()


def test_bandit_floor_times_arms_at_most_one() -> None:
    def arms(n: int, floor: float) -> Manifest:
        def mutate(spec: dict[str, Any]) -> None:
            spec["challengers"] = [{"name": f"arm-{i}", "service": f"arm-{i}"} for i in range(n - 1)]
            spec["bandit"]["minExploration"] = floor

        return _with(mutate, "bandit-gateway.yaml")

    (problem,) = python_problems(arms(11, 0.5))
    assert problem.path == "spec.bandit.minExploration" and "use at most 0.09091" in problem.message
    assert _paths(arms(10, 0.1)) == set()  # exactly 1: every arm gets its floor, nothing left to allocate


def test_an_oversized_list_is_rejected_before_any_cel_rule_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cel(rule: str, value: Any) -> bool:
        raise AssertionError(f"CEL ran on an oversized manifest: {rule}")

    monkeypatch.setattr(crd_validation, "evaluate_rule", no_cel)
    many = _with(lambda s: s.__setitem__("challengers", [{"name": f"c{i}", "service": f"c{i}"} for i in range(400)]))
    problems = check_manifest(many)
    assert [p.path for p in problems] == ["spec.challengers"]
    assert "at most 10" in problems[0].message


PROBES: dict[str, Callable[[dict[str, Any]], None]] = {
    "misspelt template variable": lambda s: s["analysis"]["primaryMetric"].__setitem__(
        "trials", 'sum(model_outcomes_total{variant="{{variatn}}"})'
    ),
    "unbalanced parenthesis": lambda s: s["analysis"]["primaryMetric"].__setitem__(
        "trials", 'sum(rate(model_outcomes_total{variant="{{variant}}"}[5m])'
    ),
    "unclosed label string": lambda s: s["analysis"]["guardrails"][0].__setitem__(
        "query", 'sum(rate(x{variant="{{variant}}}[5m]))'
    ),
    "stray closing bracket": lambda s: s["analysis"]["guardrails"][0].__setitem__(
        "query", 'sum(rate(x{variant="{{variant}}"}[5m])))'
    ),
    "huge count": lambda s: s["canary"].__setitem__("minSamplesPerStep", 1e30),
    "overflowing step": lambda s: s["canary"].__setitem__("stepDuration", "99999999999999999999d"),
    "overflowing timeout": lambda s: s["analysis"]["prometheus"].__setitem__("timeout", "9999999999999999d"),
    "interval 1ms": lambda s: s["analysis"].__setitem__("interval", "1ms"),
    "one service for two variants": lambda s: s["challengers"][0].__setitem__("service", "churn-v2"),
    "valid": lambda s: None,
    "brackets inside a string are text": lambda s: s["analysis"]["guardrails"][0].__setitem__(
        "query", 'sum(rate(x{variant="{{variant}}",path=~"/a(b|[c"}[5m]))'
    ),
}


def _operator_rejects(manifest: Manifest) -> bool:
    try:
        load(manifest)
    except SpecError:
        return True
    return False


@pytest.mark.parametrize("probe", list(PROBES))
def test_validate_gives_the_operators_verdict_without_a_traceback(
    default_floor: None, probe: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _with(PROBES[probe])
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(manifest))
    code = main(["validate", "-f", str(path)])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert (code == 1) is _operator_rejects(manifest) is (probe not in ("valid", "brackets inside a string are text"))
    if code == 1:
        assert all(line.startswith(f"{path}: churn-v3: spec.") for line in out.out.splitlines()), out.out

"""The steerable exporter: deterministic for a seed, steerable per variant, silent drops series, SIGTERM stops it."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mlrollouts.localstack.exporter import ExporterProcess, Simulator


def run(seed: int, ticks: int = 50) -> dict:
    simulator = Simulator(["churn-v2", "churn-v3"], seed)
    simulator.control({"variant": "churn-v3", "rate": 100, "success": 0.8, "error_rate": 0.05})
    for _ in range(ticks):
        simulator.advance(0.1)
    return simulator.state()


def exposition(simulator: Simulator) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(simulator)  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_same_seed_same_totals_and_rates_follow_the_settings() -> None:
    first, second, other = run(7), run(7), run(8)
    assert first == second
    assert first["churn-v3"]["totals"] != other["churn-v3"]["totals"]
    v3 = first["churn-v3"]["totals"]
    # 5 s at 100/s: Poisson(500) requests; 5 % errors; 80 % of the rest succeed (4 sigma bounds).
    assert 410 <= v3["requests"] <= 590
    assert v3["requests"] == v3["errors"] + v3["successes"] + v3["failures"]
    assert abs(v3["errors"] / v3["requests"] - 0.05) < 0.045
    assert abs(v3["successes"] / (v3["successes"] + v3["failures"]) - 0.8) < 0.08
    assert 40 <= first["churn-v2"]["totals"]["requests"] <= 160  # default 20/s


def test_rate_zero_freezes_and_silent_removes_the_series() -> None:
    simulator = Simulator(["churn-v2", "churn-v3"], 1)
    simulator.advance(0.5)
    simulator.control({"variant": "churn-v2", "rate": 0})
    frozen = simulator.state()["churn-v2"]["totals"]
    simulator.control({"variant": "churn-v3", "silent": True})
    simulator.advance(0.5)
    assert simulator.state()["churn-v2"]["totals"] == frozen
    text = exposition(simulator)
    assert f'ab_test_requests_total{{variant="churn-v2"}} {float(frozen["requests"])}' in text
    assert 'variant="churn-v3"' not in text
    assert 'ab_test_latency_seconds_bucket{le="+Inf",variant="churn-v2"}' in text
    assert 'model_outcome_value_squares_total{variant="churn-v2"}' in text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"variant": "churn-v9", "rate": 1}, "variant: unknown 'churn-v9'; known: churn-v2"),
        ({"variant": "churn-v2", "success": 1.5}, "success: must be in [0, 1]"),
        ({"variant": "churn-v2", "rate": -1}, "rate: must be >= 0"),
        ({"variant": "churn-v2", "rate": "fast"}, "rate: must be a number, got 'fast'"),
        ({"variant": "churn-v2", "silent": 1}, "silent: must be true or false, got 1"),
        ({"variant": "churn-v2", "speed": 1}, "unknown fields ['speed']"),
    ],
)
def test_bad_control_is_refused_and_changes_nothing(body: dict, message: str) -> None:
    simulator = Simulator(["churn-v2"], 1)
    before = simulator.state()
    with pytest.raises(ValueError) as caught:
        simulator.control(body)
    assert str(caught.value).startswith(message)
    assert simulator.state() == before


@pytest.mark.integration
def test_the_process_is_steered_over_http_and_stops_on_sigterm() -> None:
    exporter = ExporterProcess(["churn-v2"], seed=3).start()
    try:
        assert exporter.control("churn-v2", rate=0, latency=0.3)["latency"] == 0.3
        bad = httpx.post(f"{exporter.url}/control", json={"variant": "churn-v2", "rate": -2}, timeout=5)
        assert bad.status_code == 400 and bad.json() == {"error": "rate: must be >= 0"}
        metrics = httpx.get(f"{exporter.url}/metrics", timeout=5).text
        assert 'model_outcomes_total{outcome="success",variant="churn-v2"}' in metrics
        assert exporter.process is not None
        started = time.monotonic()
        exporter.process.send_signal(signal.SIGTERM)
        assert exporter.process.wait(timeout=5) == 0
        assert time.monotonic() - started < 2.0
    finally:
        exporter.stop()

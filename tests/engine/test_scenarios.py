"""Whole experiments through the engine alone: synthetic traffic that follows the engine's routing."""

from __future__ import annotations

import pytest
from factories import CHALLENGER, CHAMPION, SECOND, Simulation, latency, make_spec


@pytest.mark.parametrize(
    ("strategy", "challengers", "statistics", "rates"),
    [
        ("canary", 1, {}, {CHAMPION: 0.10, CHALLENGER: 0.10}),
        ("abTest", 1, {"method": "sequential"}, {CHAMPION: 0.10, CHALLENGER: 0.13}),
        ("abTest", 1, {"method": "bayesian"}, {CHAMPION: 0.10, CHALLENGER: 0.13}),
        ("abTest", 1, {"method": "fixedHorizon"}, {CHAMPION: 0.10, CHALLENGER: 0.13}),
        ("abTest", 2, {"method": "sequential"}, {CHAMPION: 0.10, CHALLENGER: 0.10, SECOND: 0.13}),
        ("bandit", 2, {}, {CHAMPION: 0.10, CHALLENGER: 0.10, SECOND: 0.14}),
    ],
)
def test_better_or_equal_challenger_is_promoted(strategy, challengers, statistics, rates):
    spec = make_spec(strategy, challengers=challengers, statistics=statistics, guardrails=[latency()])
    sim = Simulation(spec, rates, per_tick=2000, guardrails=lambda tick, variant: {"p95-latency": 0.3})
    status = sim.run(600)
    best = max(spec.challengers, key=lambda c: rates[c.name]).name
    assert (status.phase, status.winner) == ("Promoted", best)
    assert status.weights[best] == 100
    assert all(d.status.phase != "RolledBack" for d in sim.decisions)


@pytest.mark.parametrize("strategy", ["canary", "abTest", "bandit"])
def test_worse_challenger_is_rolled_back(strategy):
    spec = make_spec(strategy, statistics={"method": "sequential"})
    sim = Simulation(spec, {CHAMPION: 0.20, CHALLENGER: 0.12}, per_tick=2000)
    status = sim.run(600)
    assert status.phase == "RolledBack"
    assert status.weights == {CHAMPION: 100, CHALLENGER: 0}
    if strategy == "canary":
        assert max(d.status.weights[CHALLENGER] for d in sim.decisions) <= 10  # never left the first step


def test_latency_regression_rolls_back_within_failure_limit_ticks():
    spec = make_spec("canary", guardrails=[latency(max_=0.5, failure_limit=3)], block={"steps": [10, 50, 100]})
    regression_at = 4

    def p95(tick: int, variant: str) -> dict[str, float]:
        return {"p95-latency": 0.9 if variant == CHALLENGER and tick >= regression_at else 0.2}

    sim = Simulation(spec, {CHAMPION: 0.1, CHALLENGER: 0.1}, guardrails=p95)
    status = sim.run(50)
    assert (status.phase, status.reason) == ("RolledBack", "GuardrailFailed")
    assert len(sim.decisions) - 1 == regression_at + 3 - 1  # the 3rd failing tick rolls back
    assert "3rd consecutive failing check (limit 3)" in status.message


def test_no_traffic_stays_at_the_first_step():
    spec = make_spec("canary")
    sim = Simulation(spec, {CHAMPION: 0.1, CHALLENGER: 0.1}, per_tick=0)
    status = sim.run(120)
    assert (status.phase, status.step, status.weights) == ("Progressing", 0, {CHAMPION: 90, CHALLENGER: 10})
    assert all(d.actions == () for d in sim.decisions[1:])


@pytest.mark.parametrize(("policy", "phase"), [("hold", "Paused"), ("rollback", "RolledBack")])
def test_flaky_metrics_hold_then_take_the_configured_action(policy, phase):
    spec = make_spec("canary", onMetricsUnavailable=policy, metricsFailureLimit=3)
    outage = range(5, 9)
    sim = Simulation(spec, {CHAMPION: 0.1, CHALLENGER: 0.1}, available=lambda tick: tick not in outage)
    for index in range(8):
        sim.tick(index)
    kinds = [d.status.analysis.decision for d in sim.decisions[5:8]]
    assert kinds[:2] == ["hold", "hold"]
    assert sim.status.phase == phase and sim.status.reason == "MetricsUnavailable"
    assert sim.status.weights == (
        {CHAMPION: 90, CHALLENGER: 10} if policy == "hold" else {CHAMPION: 100, CHALLENGER: 0}
    )
    if policy == "hold":
        for index in range(8, 10):
            sim.tick(index)
        assert sim.status.phase == "Progressing" and sim.status.metrics_failures == 0


def test_flaky_metrics_below_the_limit_only_delay_the_canary():
    spec = make_spec("canary", metricsFailureLimit=3)
    sim = Simulation(spec, {CHAMPION: 0.1, CHALLENGER: 0.1}, available=lambda tick: tick % 3 != 1)
    status = sim.run(300)
    assert status.phase == "Promoted"
    assert max(d.status.metrics_failures for d in sim.decisions) == 1

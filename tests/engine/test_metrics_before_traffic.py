"""No traffic moves before the metrics work: the first step waits for one complete read of every query."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import CHALLENGER, CHAMPION, T0, first_read, make_spec, observe

from mlrollouts.api import ModelExperimentStatus
from mlrollouts.engine import Observations, VariantObservation, decide

UNREACHABLE = "Prometheus at http://10.255.255.1:9090 is unreachable: connection refused (4 of 4 queries failed)"


def _unreachable(at=T0) -> Observations:
    nothing = {"successes": None, "trials": None}
    return Observations(
        time=at,
        variants={CHAMPION: VariantObservation(nothing), CHALLENGER: VariantObservation(nothing)},
        errors=(UNREACHABLE,),
        failed_queries=4,
    )


def _conditions(status):
    return {c.type: c for c in status.conditions}


@pytest.mark.parametrize("strategy", ["canary", "abTest", "shadow", "bandit"])
def test_unreachable_prometheus_keeps_the_champion_at_100_and_says_why(strategy):
    spec = make_spec(strategy)
    status, events = ModelExperimentStatus(), []
    for minute in range(6):  # beyond metricsFailureLimit (5): nothing started, so nothing is held or undone
        now = T0 + timedelta(minutes=minute)
        decision = decide(spec, status, _unreachable(now), now, generation=1)
        assert decision.actions == ()
        status, events = decision.status, [*events, *decision.events]
    assert (status.phase, status.reason) == ("Pending", "MetricsUnavailable")
    assert status.weights == {} and status.mirror_percent is None and status.history == []
    assert UNREACHABLE in status.message and "6 failed reads" in status.message
    ready, metrics = _conditions(status)["Ready"], _conditions(status)["MetricsAvailable"]
    assert (ready.status, ready.reason) == ("False", "MetricsUnavailable")
    assert UNREACHABLE in ready.message
    assert (metrics.status, metrics.message) == ("False", UNREACHABLE)
    assert ready.last_transition_time == T0  # the condition did not flap
    assert [(e.type, e.reason) for e in events] == [("Warning", "MetricsUnavailable")]  # once, not per tick


def test_a_failed_query_blocks_the_start_even_when_the_champion_answered():
    spec = make_spec("canary")
    bad = "bad query (HTTP 400): parse error: unclosed left parenthesis"
    partial = Observations(
        time=T0,
        variants={CHAMPION: VariantObservation({"successes": 5.0, "trials": 10.0}, {"p95-latency": None})},
        errors=(f"guardrail p95-latency of {CHAMPION}: {bad}",),
        failed_queries=1,
    )
    decision = decide(spec, ModelExperimentStatus(), partial, T0, generation=1)
    assert decision.actions == () and decision.status.phase == "Pending"
    assert bad in _conditions(decision.status)["Ready"].message


def test_an_empty_champion_result_is_not_a_complete_read():
    spec = make_spec("canary")
    empty = observe(T0, {CHAMPION: (None, None)}, errors=(f"empty result for trials of {CHAMPION}: no series",))
    decision = decide(spec, ModelExperimentStatus(), empty, T0, generation=1)
    assert decision.actions == () and decision.status.phase == "Pending"
    assert "empty result for trials of churn-v2" in decision.status.message


def test_the_first_complete_read_starts_and_moves_traffic_once():
    spec = make_spec("canary")
    waiting = decide(spec, ModelExperimentStatus(), _unreachable(), T0, generation=1).status
    later = T0 + timedelta(minutes=2)
    decision = decide(spec, waiting, first_read(later), later, generation=1)
    status = decision.status
    assert (status.phase, status.weights, status.metrics_failures) == ("Progressing", {CHAMPION: 90, CHALLENGER: 10}, 0)
    assert [a.split.weights for a in decision.actions] == [{CHAMPION: 90, CHALLENGER: 10}]
    assert status.started_at == later and [h.action for h in status.history] == ["start"]
    assert {c.type: c.status for c in status.conditions}["Ready"] == "True"
    assert {c.type: c.status for c in status.conditions}["MetricsAvailable"] == "True"

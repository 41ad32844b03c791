"""Missing metrics are not bad metrics: a separate counter, hold, then the configured action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import CHALLENGER, CHAMPION, T0, latency, make_spec, observe, started

from mlrollouts.engine import decide

GOOD = {CHAMPION: (10, 100), CHALLENGER: (1, 10)}
MISSING_TRIALS = {CHAMPION: (10, 100), CHALLENGER: (1, None)}


def _run(spec, status, counts_per_tick, guardrails=None):
    decisions = []
    for index, counts in enumerate(counts_per_tick):
        now = T0 + timedelta(minutes=index + 1)
        decision = decide(spec, status, observe(now, counts, guardrails, errors=("empty result",)), now)
        status = decision.status
        decisions.append(decision)
    return decisions


@pytest.mark.parametrize(
    ("policy", "phase", "reason", "weights"),
    [
        ("hold", "Paused", "MetricsUnavailable", {CHAMPION: 90, CHALLENGER: 10}),
        ("rollback", "RolledBack", "MetricsUnavailable", {CHAMPION: 100, CHALLENGER: 0}),
    ],
)
def test_failure_limit_then_configured_action(policy, phase, reason, weights):
    spec = make_spec("canary", onMetricsUnavailable=policy, metricsFailureLimit=3)
    decisions = _run(spec, started(spec), [MISSING_TRIALS] * 3)
    for held in decisions[:2]:
        assert held.status.phase == "Progressing"
        assert held.status.analysis.decision == "hold"
        assert held.actions == ()
    assert decisions[1].status.metrics_failures == 2
    assert "metrics unavailable (2/3 consecutive): empty result" in decisions[1].status.analysis.reason
    last = decisions[2].status
    assert (last.phase, last.reason, last.weights) == (phase, reason, weights)
    condition = {c.type: c for c in last.conditions}["MetricsAvailable"]
    assert (condition.status, condition.reason, condition.message) == ("False", "MetricsUnavailable", "empty result")


def test_missing_guardrail_value_does_not_count_as_guardrail_failure():
    spec = make_spec("canary", guardrails=[latency(max_=0.5, failure_limit=1)])
    values = {CHAMPION: {"p95-latency": 0.2}, CHALLENGER: {"p95-latency": None}}
    decision = _run(spec, started(spec), [GOOD], values)[0]
    assert decision.status.phase == "Progressing"
    assert decision.status.metrics_failures == 1
    assert decision.status.guardrails == []


def test_data_back_resets_counter_and_resumes_a_metrics_pause():
    spec = make_spec("canary", metricsFailureLimit=2)
    decisions = _run(spec, started(spec), [MISSING_TRIALS, MISSING_TRIALS, MISSING_TRIALS, GOOD])
    assert decisions[2].status.phase == "Paused" and decisions[2].status.metrics_failures == 3
    back = decisions[3]
    assert back.status.phase == "Progressing" and back.status.metrics_failures == 0
    assert back.status.step_started_at == T0 + timedelta(minutes=4)
    assert "MetricsRecovered" in [e.reason for e in back.events]


def test_a_manual_pause_is_not_resumed_by_returning_data():
    spec = make_spec("canary", metricsFailureLimit=1)
    paused = decide(spec, started(spec), observe(T0, GOOD), T0, manual="pause").status
    status = _run(spec, paused, [MISSING_TRIALS, GOOD])[-1].status
    assert (status.phase, status.reason) == ("Paused", "ManualPause")

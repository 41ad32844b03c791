"""Guardrails, one tick at a time: bounds, consecutive failures, recovery, reason sentences."""

from __future__ import annotations

import pytest
from factories import CHALLENGER, CHAMPION, T0, error_rate, latency, make_spec, observe, started

from mlrollouts.api import Guardrail
from mlrollouts.engine import decide
from mlrollouts.engine.guardrails import breaches

COUNTS = {CHAMPION: (10, 100), CHALLENGER: (1, 10)}


@pytest.mark.parametrize(
    ("bounds", "value", "champion", "fails"),
    [
        ({"max": 0.5}, 0.62, None, True),
        ({"max": 0.5}, 0.5, None, False),
        ({"min": 0.9}, 0.85, None, True),
        ({"min": 0.9}, 0.95, None, False),
        ({"maxIncrease": 0.01}, 0.025, 0.01, True),
        ({"maxIncrease": 0.01}, 0.019, 0.01, False),
        ({"maxRatio": 1.5}, 0.31, 0.2, True),
        ({"maxRatio": 1.5}, 0.29, 0.2, False),
        ({"maxRatio": 1.5}, 0.01, 0.0, True),  # champion 0: any positive value is an infinite ratio
        ({"maxRatio": 1.5}, 0.0, 0.0, False),
    ],
)
def test_bound_table(bounds, value, champion, fails):
    guardrail = Guardrail(name="g", query="q", **bounds)
    assert bool(breaches(guardrail, value, champion)) is fails


def _tick(spec, status, challenger_latency, champion_latency=0.2):
    values = {CHAMPION: {"p95-latency": champion_latency}, CHALLENGER: {"p95-latency": challenger_latency}}
    return decide(spec, status, observe(T0, COUNTS, values), T0)


def test_consecutive_failures_roll_back_at_the_limit_with_a_reason_sentence():
    spec = make_spec("canary", guardrails=[latency(max_=0.5, failure_limit=3)])
    status = started(spec)
    first = _tick(spec, status, 0.62)
    assert first.status.phase == "Progressing"
    assert first.status.guardrails[0].consecutive_failures == 1 and not first.status.guardrails[0].healthy
    assert [e.reason for e in first.events] == ["GuardrailFailing"]
    second = _tick(spec, first.status, 0.7)
    assert second.status.phase == "Progressing" and second.events == ()
    third = _tick(spec, second.status, 0.62)
    assert third.status.phase == "RolledBack"
    assert third.status.reason == "GuardrailFailed"
    assert third.status.weights == {CHAMPION: 100, CHALLENGER: 0} and third.status.mirror_percent is None
    assert third.status.message == ("p95-latency of churn-v3 0.62 > max 0.5, 3rd consecutive failing check (limit 3)")
    assert third.status.analysis.decision == "rollback"
    assert third.actions[0].split.weights == {CHAMPION: 100, CHALLENGER: 0}
    assert ("Warning", "RolledBack") in [(e.type, e.reason) for e in third.events]


def test_a_passing_check_resets_the_count():
    spec = make_spec("canary", guardrails=[latency(max_=0.5, failure_limit=2)])
    status = _tick(spec, started(spec), 0.9).status
    recovered = _tick(spec, status, 0.3)
    assert recovered.status.guardrails[0].consecutive_failures == 0 and recovered.status.guardrails[0].healthy
    assert [e.reason for e in recovered.events] == ["GuardrailRecovered"]
    again = _tick(spec, recovered.status, 0.9)
    assert again.status.phase == "Progressing"


def test_relative_guardrail_reports_champion_value_and_threshold():
    spec = make_spec("canary", guardrails=[error_rate(failure_limit=1, maxIncrease=0.01)])
    values = {CHAMPION: {"error-rate": 0.01}, CHALLENGER: {"error-rate": 0.03}}
    decision = decide(spec, started(spec), observe(T0, COUNTS, values), T0)
    assert decision.status.phase == "RolledBack"
    entry = decision.status.guardrails[0]
    assert (entry.value, entry.champion_value, entry.threshold) == (0.03, 0.01, "maxIncrease 0.01 over champion")
    assert "0.03 is 0.02 above champion 0.01 > maxIncrease 0.01" in decision.status.message
    condition = {c.type: c for c in decision.status.conditions}["GuardrailsHealthy"]
    assert (condition.status, condition.reason) == ("False", "GuardrailFailed")

"""Canary steps, one tick at a time: when a step advances, promotes, waits or rolls back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import CHALLENGER, CHAMPION, T0, latency, make_spec, observe, started

from mlrollouts.engine import Split, decide

STEP = timedelta(minutes=10)
HEALTHY = {CHAMPION: {"p95-latency": 0.2}, CHALLENGER: {"p95-latency": 0.3}}
SLOW = {CHAMPION: {"p95-latency": 0.2}, CHALLENGER: {"p95-latency": 0.9}}


def _spec(margin: float = 0.9, **top):
    """A wide non-inferiority margin: these tables are about steps, not about the size of the evidence."""
    return make_spec(
        "canary",
        block={"steps": [10, 50, 100], "stepDuration": "10m", "minSamplesPerStep": 100},
        guardrails=[latency(max_=0.5, failure_limit=3)],
        metric={"nonInferiorityMargin": margin},
        **top,
    )


@pytest.mark.parametrize(
    ("elapsed", "counts", "guardrails", "decision", "step"),
    [
        (STEP, {CHAMPION: (90, 900), CHALLENGER: (10, 100)}, HEALTHY, "advance", 1),
        (STEP - timedelta(seconds=1), {CHAMPION: (90, 900), CHALLENGER: (10, 100)}, HEALTHY, "continue", 0),
        (STEP, {CHAMPION: (90, 900), CHALLENGER: (9, 99)}, HEALTHY, "continue", 0),
        (STEP, {CHAMPION: (90, 900), CHALLENGER: (10, 100)}, SLOW, "continue", 0),
        (STEP * 3, {CHAMPION: (0, 0), CHALLENGER: (0, 0)}, HEALTHY, "continue", 0),
    ],
    ids=["all-met", "too-early", "too-few-samples", "guardrail-failing", "no-traffic"],
)
def test_step_advance_table(elapsed, counts, guardrails, decision, step):
    spec = _spec()
    now = T0 + elapsed
    result = decide(spec, started(spec), observe(now, counts, guardrails), now)
    assert result.status.analysis.decision == decision
    assert result.status.step == step
    if decision == "advance":
        assert result.status.weights == {CHAMPION: 50, CHALLENGER: 50}
        assert result.actions[0].split == Split({CHAMPION: 50, CHALLENGER: 50})
        assert result.status.step_started_at == now
        assert result.status.step_start_samples == {CHAMPION: 900, CHALLENGER: 100}
        assert [e.reason for e in result.events] == ["StepAdvanced"]
        assert result.status.history[-1].action == "advance"
    else:
        assert result.actions == ()
        assert "waiting" in result.status.analysis.reason


def test_waiting_reason_names_what_is_missing():
    spec = _spec()
    now = T0 + timedelta(minutes=4)
    result = decide(spec, started(spec), observe(now, {CHAMPION: (9, 90), CHALLENGER: (1, 10)}, HEALTHY), now)
    assert "4m of 10m elapsed" in result.status.analysis.reason
    assert "churn-v2 has 90 of 100 new trials" in result.status.analysis.reason
    assert "churn-v3 has 10 of 100 new trials" in result.status.analysis.reason


def _at_last_step(spec):
    status = started(spec)
    now = T0 + STEP
    return decide(spec, status, observe(now, {CHAMPION: (90, 900), CHALLENGER: (10, 100)}, HEALTHY), now).status


def test_last_step_promotes_challenger():
    spec = _spec()
    status = _at_last_step(spec)
    now = T0 + 2 * STEP
    result = decide(spec, status, observe(now, {CHAMPION: (2890, 28900), CHALLENGER: (1210, 12100)}, HEALTHY), now)
    assert (result.status.phase, result.status.winner) == ("Promoted", CHALLENGER)
    assert result.status.weights == {CHAMPION: 0, CHALLENGER: 100}
    assert result.status.finished_at == now
    assert result.status.analysis.decision == "promote"
    assert result.actions[0].split == Split({CHAMPION: 0, CHALLENGER: 100})


def test_promotion_waits_until_a_loss_beyond_the_margin_is_ruled_out():
    spec = _spec(margin=0.05)
    status = _at_last_step(spec)
    now = T0 + 2 * STEP
    result = decide(spec, status, observe(now, {CHAMPION: (140, 1400), CHALLENGER: (60, 600)}, HEALTHY), now)
    assert (result.status.phase, result.status.step, result.actions) == ("Progressing", 1, ())
    reason = result.status.analysis.reason
    assert "a loss beyond the 5% margin (0.005) not yet ruled out (worst case -0." in reason
    plenty = {CHAMPION: (50140, 501400), CHALLENGER: (50060, 500600)}
    later = decide(spec, result.status, observe(now + STEP, plenty, HEALTHY), now + STEP)
    assert later.status.phase == "Promoted"
    assert "margin (0.005) ruled out" in later.status.message


def test_without_auto_promote_it_waits_at_the_step_before_100():
    spec = _spec(autoPromote=False)
    status = _at_last_step(spec)
    now = T0 + 2 * STEP
    result = decide(spec, status, observe(now, {CHAMPION: (2890, 28900), CHALLENGER: (1210, 12100)}, HEALTHY), now)
    assert (result.status.phase, result.status.reason) == ("Paused", "ReadyToPromote")
    assert result.status.weights == {CHAMPION: 50, CHALLENGER: 50} and result.actions == ()
    promoted = decide(spec, result.status, observe(now, {}), now, manual="promote").status
    assert promoted.phase == "Promoted" and promoted.weights == {CHAMPION: 0, CHALLENGER: 100}


def test_significantly_worse_primary_metric_rolls_back():
    spec = _spec()
    counts = {CHAMPION: (2700, 9000), CHALLENGER: (150, 1000)}  # 30 % vs 15 %
    result = decide(spec, started(spec), observe(T0, counts, HEALTHY), T0)
    assert (result.status.phase, result.status.reason) == ("RolledBack", "PrimaryMetricWorse")
    assert "retention of churn-v3 is significantly worse (lift -50%" in result.status.message
    assert result.status.evidence[CHALLENGER].p_value < 0.05


def test_sequential_p_value_is_a_running_minimum():
    spec = _spec()
    first = decide(spec, started(spec), observe(T0, {CHAMPION: (300, 1000), CHALLENGER: (21, 100)}, HEALTHY), T0)
    p_first = first.status.evidence[CHALLENGER].p_value
    second = decide(spec, first.status, observe(T0, {CHAMPION: (600, 2000), CHALLENGER: (60, 200)}, HEALTHY), T0)
    assert p_first < 1.0
    assert second.status.evidence[CHALLENGER].p_value == p_first

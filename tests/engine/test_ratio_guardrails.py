"""Ratio guardrails, one tick at a time: counts per step, verdicts, holds, rollbacks and their sentences."""

from __future__ import annotations

from datetime import timedelta

from factories import CHALLENGER, CHAMPION, T0, make_spec, observe, started

from mlrollouts.engine import decide

ERRORS = {
    "name": "error-rate",
    "bad": 'sum(errors_total{variant="{{variant}}"})',
    "total": 'sum(requests_total{variant="{{variant}}"})',
}
MINUTE = timedelta(minutes=1)


def spec_with(**bounds: float):
    return make_spec(
        "canary",
        guardrails=[{**ERRORS, **bounds}],
        block={"steps": [10, 50, 100], "stepDuration": "2m", "minSamplesPerStep": 10},
    )


def tick(spec, status, minute: int, counts: dict[str, tuple[float | None, float | None]]):
    """Cumulative counters: (errors, requests) per variant; the primary metric sees the same requests."""
    guardrails = {name: {"error-rate.bad": bad, "error-rate.total": total} for name, (bad, total) in counts.items()}
    trials = {name: (total, total) for name, (_, total) in counts.items()}
    return decide(
        spec, status, observe(T0 + minute * MINUTE, trials, guardrails, cumulative=True), T0 + minute * MINUTE
    )


def test_no_traffic_is_no_evidence_never_a_rollback_nor_missing_metrics():
    spec = spec_with(max=0.01)
    status = started(spec)
    for minute in range(1, 30):
        decision = tick(spec, status, minute, {CHAMPION: (0, 0), CHALLENGER: (0, 0)})
        status = decision.status
    assert status.phase == "Progressing" and status.metrics_failures == 0
    assert (status.guardrails[0].verdict, status.guardrails[0].healthy) == ("noData", True)


def test_one_error_among_a_canarys_first_requests_is_not_a_breach():
    """A normal approximation calls 1 of 50 against 0 of 5000 a nine-sigma event; the exact test does not."""
    spec = spec_with(maxRatio=1.2)
    status = tick(spec, started(spec), 1, {CHAMPION: (0, 0), CHALLENGER: (0, 0)}).status
    decision = tick(spec, status, 2, {CHAMPION: (0, 5000), CHALLENGER: (1, 50)})
    entry = decision.status.guardrails[0]
    assert decision.status.phase == "Progressing"
    assert (entry.verdict, entry.bad, entry.total, entry.champion_bad, entry.champion_total) == (
        "possible",
        1,
        50,
        0,
        5000,
    )
    assert entry.p_value is not None and entry.p_value > 0.01
    assert [e.reason for e in decision.events] == ["GuardrailFailing"]
    assert "not established yet" in decision.events[0].message


def test_a_possible_breach_holds_the_step_and_an_established_one_rolls_back():
    spec = spec_with(max=0.01)
    status = tick(spec, started(spec), 1, {CHAMPION: (0, 0), CHALLENGER: (0, 0)}).status
    # 3 of 100 after the step's duration and samples: above 1 % but not established: the canary holds.
    held = tick(spec, status, 4, {CHAMPION: (0, 900), CHALLENGER: (3, 100)})
    assert held.status.step == 0 and held.status.weights[CHALLENGER] == 10
    assert held.status.analysis.decision != "advance" and "possibly breached" in held.status.analysis.reason
    # 40 of 1000 establishes it.
    breach = tick(spec, held.status, 5, {CHAMPION: (0, 9000), CHALLENGER: (40, 1000)})
    assert (breach.status.phase, breach.status.reason) == ("RolledBack", "GuardrailFailed")
    assert breach.status.weights == {CHAMPION: 100, CHALLENGER: 0}
    assert breach.status.message.startswith("error-rate of churn-v3 0.04 (40 of 1000 this step) breaks max 0.01")
    assert "established by the sequential test" in breach.status.message


def test_counts_restart_with_each_step_and_survive_a_counter_reset():
    spec = spec_with(max=0.05)
    status = tick(spec, started(spec), 1, {CHAMPION: (5, 1000), CHALLENGER: (0, 100)}).status  # baselines
    status = tick(spec, status, 4, {CHAMPION: (10, 2000), CHALLENGER: (3, 200)}).status
    assert status.step == 1, status.analysis.reason  # advanced: the step's counts start here
    assert status.guardrail_counts.step_start[CHALLENGER] == {"error-rate.bad": 3, "error-rate.total": 100}
    # The challenger's process restarts: its counters drop to 2 of 30; since-start keeps counting.
    status = tick(spec, status, 5, {CHAMPION: (12, 2500), CHALLENGER: (2, 30)}).status
    assert status.guardrail_counts.since_start[CHALLENGER] == {"error-rate.bad": 5, "error-rate.total": 130}
    entry = status.guardrails[0]
    assert (entry.variant, entry.bad, entry.total, entry.champion_bad, entry.champion_total) == (
        CHALLENGER,
        2,
        30,
        2,
        500,
    )


def test_a_missing_count_is_missing_metrics_not_a_bad_value():
    spec = spec_with(max=0.01)
    status = tick(spec, started(spec), 1, {CHAMPION: (0, 100), CHALLENGER: (0, 10)}).status
    decision = tick(spec, status, 2, {CHAMPION: (0, 200), CHALLENGER: (None, 20)})
    assert decision.status.metrics_failures == 1 and decision.status.phase == "Progressing"
    assert "error-rate.bad of churn-v3" in decision.status.analysis.reason


def test_window_counts_are_since_start_already_and_rounded():
    """increase(...[{{window}}]) extrapolates: 2.6 errors of 99.7 requests are read as 3 of 100."""
    windowed = {
        **ERRORS,
        "bad": 'sum(increase(errors_total{variant="{{variant}}"}[{{window}}]))',
        "total": 'sum(increase(requests_total{variant="{{variant}}"}[{{window}}]))',
        "max": 0.05,
    }
    spec = make_spec("canary", guardrails=[windowed])
    decision = tick(spec, started(spec), 1, {CHAMPION: (1.2, 900.4), CHALLENGER: (2.6, 99.7)})
    counts = decision.status.guardrail_counts
    assert counts.counters == {}
    assert counts.since_start[CHALLENGER] == {"error-rate.bad": 3, "error-rate.total": 100}
    assert (decision.status.guardrails[0].bad, decision.status.guardrails[0].total) == (3, 100)

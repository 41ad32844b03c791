"""Manual actions override the rules; spec changes restart the analysis visibly, never a silent jump."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import CHALLENGER, CHAMPION, SECOND, T0, first_read, make_spec, observe, started

from mlrollouts.api.status import ModelExperimentStatus
from mlrollouts.engine import decide

COUNTS = {CHAMPION: (90, 900), CHALLENGER: (10, 100)}


@pytest.mark.parametrize(
    ("action", "phase", "reason", "weights"),
    [
        ("promote", "Promoted", "ManualPromotion", {CHAMPION: 0, CHALLENGER: 100}),
        ("rollback", "RolledBack", "ManualRollback", {CHAMPION: 100, CHALLENGER: 0}),
        ("pause", "Paused", "ManualPause", {CHAMPION: 90, CHALLENGER: 10}),
    ],
)
def test_manual_actions_override_and_are_recorded(action, phase, reason, weights):
    spec = make_spec("canary")
    decision = decide(spec, started(spec), observe(T0, COUNTS), T0, manual=action)
    assert (decision.status.phase, decision.status.reason, decision.status.weights) == (phase, reason, weights)
    assert decision.status.history[-1].time == T0
    assert decision.status.history[-1].to == phase


def test_resume_restarts_the_step_window_so_a_step_is_not_cut_short():
    spec = make_spec("canary")
    status = decide(spec, started(spec), observe(T0, COUNTS), T0 + timedelta(minutes=8), manual="pause").status
    now = T0 + timedelta(minutes=30)
    resumed = decide(spec, status, observe(now, {}), now, manual="resume").status
    assert resumed.phase == "Progressing" and resumed.step_started_at == now
    assert resumed.history[-1].action == "resume"
    tick = decide(spec, resumed, observe(now + timedelta(minutes=1), COUNTS), now + timedelta(minutes=1)).status
    assert tick.step == 0


def test_resume_when_not_paused_is_ignored_with_an_event():
    spec = make_spec("canary")
    status = started(spec)
    decision = decide(spec, status, observe(T0, COUNTS), T0, manual="resume")
    assert decision.status.phase == "Progressing"
    assert [e.reason for e in decision.events] == ["ManualActionIgnored"]


def test_manual_promote_in_abn_picks_the_best_observed_challenger():
    spec = make_spec("abTest", challengers=2)
    counts = {CHAMPION: (100, 1000), CHALLENGER: (105, 1000), SECOND: (120, 1000)}
    status = decide(spec, started(spec), observe(T0, counts), T0).status
    promoted = decide(spec, status, observe(T0, counts), T0, manual="promote").status
    assert promoted.winner == SECOND and promoted.weights[SECOND] == 100


def _advanced(spec):
    status = started(spec)
    now = T0 + timedelta(minutes=10)
    return decide(spec, status, observe(now, COUNTS), now, generation=1).status


def test_spec_change_keeps_traffic_clamps_step_and_restarts_analysis():
    spec = make_spec("canary", block={"steps": [10, 30, 60, 100]})
    status = _advanced(spec)
    assert status.weights == {CHAMPION: 70, CHALLENGER: 30}
    changed = make_spec("canary", block={"steps": [5, 20, 40, 100]})
    now = T0 + timedelta(minutes=12)
    decision = decide(changed, status, observe(now, COUNTS), now, generation=2)
    new = decision.status
    assert (new.step, new.weights) == (1, {CHAMPION: 80, CHALLENGER: 20})
    assert new.observed_generation == 2 and new.phase == "Progressing"
    assert (new.samples, new.counters, new.evidence, new.guardrails) == ({}, {}, {}, [])
    assert new.step_started_at == now and new.started_at == now
    assert "SpecChanged" in [e.reason for e in decision.events]
    assert new.history[-1].action == "specChange"


def test_strategy_change_restarts_from_step_zero_with_a_warning():
    spec = make_spec("canary", block={"steps": [10, 30, 100]})
    status = _advanced(spec)
    ab = make_spec("abTest")
    decision = decide(ab, status, observe(T0, COUNTS), T0 + timedelta(minutes=20), generation=2)
    assert decision.status.weights == {CHAMPION: 50, CHALLENGER: 50}
    assert decision.status.strategy == "abTest" and decision.status.observed_generation == 2
    assert ("Warning", "SpecChanged") in [(e.type, e.reason) for e in decision.events]
    assert "strategy changed from canary to abTest" in decision.events[0].message


def test_same_generation_is_not_a_spec_change():
    spec = make_spec("canary")
    status = started(spec, generation=3)
    decision = decide(spec, status, observe(T0, COUNTS), T0, generation=3)
    assert "SpecChanged" not in [e.reason for e in decision.events]


def test_spec_change_keeps_a_manual_pause_but_resumes_other_pauses():
    spec = make_spec("canary")
    paused = decide(spec, started(spec), observe(T0, COUNTS), T0, manual="pause").status
    kept = decide(spec, paused, observe(T0, COUNTS), T0, generation=2).status
    assert (kept.phase, kept.reason, kept.observed_generation) == ("Paused", "ManualPause", 2)
    opened, later = T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)
    window = decide(spec, started(spec), observe(opened, {CHAMPION: (0, 0), CHALLENGER: (0, 0)}), opened).status
    skewed = observe(later, {CHAMPION: (0, 8500), CHALLENGER: (0, 1500)})
    srm = decide(spec, decide(spec, window, skewed, later).status, skewed, later).status
    assert srm.reason == "SampleRatioMismatch"
    assert decide(spec, srm, observe(later, COUNTS), later, generation=2).status.phase == "Progressing"


def test_history_is_bounded_and_keeps_the_newest_entries():
    spec = make_spec("canary")
    status = started(spec)
    for index in range(60):
        now = T0 + timedelta(minutes=index)
        status = decide(spec, status, observe(now, {}), now, manual="pause" if index % 2 == 0 else "resume").status
    assert len(status.history) == 50
    assert status.history[-1].time == T0 + timedelta(minutes=59) and status.history[-1].action == "resume"


def _waiting_for_metrics(spec):
    status = decide(spec, ModelExperimentStatus(), observe(T0, {}, errors=("connection refused",)), T0).status
    assert (status.phase, status.reason, status.weights) == ("Pending", "MetricsUnavailable", {})
    return status


@pytest.mark.parametrize("action", ["pause", "resume", "promote"])
def test_a_manual_action_before_the_first_step_is_refused_with_an_event_not_dropped(action):
    spec = make_spec("canary")
    now = T0 + timedelta(seconds=10)
    decision = decide(spec, _waiting_for_metrics(spec), observe(now, {}, errors=("refused",)), now, manual=action)
    assert (decision.status.phase, decision.status.weights, decision.actions) == ("Pending", {}, ())
    (event,) = [e for e in decision.events if e.reason == "ManualActionIgnored"]
    assert event.message.startswith(f"{action} not applied: the experiment has not started (Pending, Metrics")
    assert "rollback to end it" in event.message


def test_a_manual_rollback_before_the_first_step_ends_the_experiment_on_the_champion():
    spec = make_spec("canary")
    now = T0 + timedelta(seconds=10)
    decision = decide(spec, _waiting_for_metrics(spec), observe(now, {}, errors=("refused",)), now, manual="rollback")
    status = decision.status
    assert (status.phase, status.reason, status.weights) == (
        "RolledBack",
        "ManualRollback",
        {CHAMPION: 100, CHALLENGER: 0},
    )
    assert [action.split.weights for action in decision.actions] == [{CHAMPION: 100, CHALLENGER: 0}]
    assert (status.history[-1].action, status.history[-1].to) == ("rolledBack", "RolledBack")
    later = T0 + timedelta(minutes=5)  # terminal: the metrics coming back start nothing
    assert decide(spec, status, first_read(later, spec), later).status.phase == "RolledBack"

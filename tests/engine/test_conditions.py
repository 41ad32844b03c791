"""Conditions follow the phase; lastTransitionTime moves only when a condition's status flips."""

from __future__ import annotations

from datetime import timedelta

from factories import CHALLENGER, CHAMPION, T0, make_spec, observe, started

from mlrollouts.engine import decide

COUNTS = {CHAMPION: (9, 90), CHALLENGER: (1, 10)}


def _conditions(status):
    return {c.type: c for c in status.conditions}


def test_running_experiment_conditions():
    conditions = _conditions(started(make_spec("canary")))
    assert {k: c.status for k, c in conditions.items()} == {
        "Ready": "True",
        "Progressing": "True",
        "GuardrailsHealthy": "True",
        "MetricsAvailable": "True",
        "SampleRatioHealthy": "Unknown",
        "Completed": "False",
    }
    assert all(c.last_transition_time == T0 for c in conditions.values())


def test_last_transition_time_changes_only_on_status_change():
    spec = make_spec("canary")
    status = started(spec)
    later = T0 + timedelta(minutes=3)
    same = decide(spec, status, observe(later, COUNTS), later).status
    assert _conditions(same)["Progressing"].last_transition_time == T0
    paused_at = T0 + timedelta(minutes=5)
    paused = decide(spec, same, observe(paused_at, COUNTS), paused_at, manual="pause").status
    progressing = _conditions(paused)["Progressing"]
    assert (progressing.status, progressing.reason, progressing.last_transition_time) == (
        "False",
        "ManualPause",
        paused_at,
    )
    assert _conditions(paused)["Ready"].status == "False"
    assert _conditions(paused)["MetricsAvailable"].last_transition_time == T0


def test_terminal_phase_completes():
    spec = make_spec("canary")
    rolled = decide(spec, started(spec), observe(T0, COUNTS), T0, manual="rollback").status
    completed = _conditions(rolled)["Completed"]
    assert (completed.status, completed.reason) == ("True", "ManualRollback")
    assert _conditions(rolled)["Progressing"].status == "False"

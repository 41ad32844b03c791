"""Conditions follow the phase; lastTransitionTime moves only when a condition's status flips."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import CHALLENGER, CHAMPION, SECOND, T0, make_spec, observe, started

from mlrollouts.api import ModelExperimentStatus
from mlrollouts.engine import decide
from mlrollouts.engine.conditions import refresh

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


def test_every_condition_carries_the_generation_it_was_computed_from():
    spec = make_spec("canary")
    status = started(spec, generation=3)
    assert {c.observed_generation for c in status.conditions} == {3}
    later = T0 + timedelta(minutes=1)
    changed = decide(spec, status, observe(later, COUNTS), later, generation=4).status
    assert {c.observed_generation for c in changed.conditions} == {4}


def test_ready_is_false_with_reason_pending_until_the_first_step():
    spec = make_spec("canary")
    fresh = _conditions(ModelExperimentStatus(conditions=refresh(ModelExperimentStatus(), T0, None)))["Ready"]
    assert (fresh.status, fresh.reason) == ("False", "Pending")
    waiting = decide(spec, ModelExperimentStatus(), observe(T0, {CHAMPION: (None, None)}), T0).status
    assert (waiting.phase, _conditions(waiting)["Ready"].status) == ("Pending", "False")
    assert _conditions(started(spec))["Ready"].status == "True"


@pytest.mark.parametrize(
    ("strategy", "challengers", "summary"),
    [
        ("canary", 1, f"{CHALLENGER}=10%"),
        ("abTest", 2, f"{CHALLENGER}=33%,{SECOND}=33%"),
        ("shadow", 1, f"{CHALLENGER}=100%(mirror)"),
    ],
)
def test_the_weight_column_is_readable(strategy, challengers, summary):
    spec = make_spec(strategy, challengers=challengers)
    status = started(spec)
    assert status.weight_summary == summary
    assert decide(spec, status, observe(T0, COUNTS), T0, manual="rollback").status.weight_summary == (
        f"{CHALLENGER}=0%" if strategy != "abTest" else f"{CHALLENGER}=0%,{SECOND}=0%"
    )

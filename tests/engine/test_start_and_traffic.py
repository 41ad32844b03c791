"""Start of an experiment per strategy, and the traffic helper the controller uses for drift repair."""

from __future__ import annotations

import pytest
from factories import CHALLENGER, CHAMPION, SECOND, T0, first_read, make_spec, observe

from mlrollouts.api import ModelExperimentStatus
from mlrollouts.engine import Mirror, SetTraffic, Split, decide, expected_traffic


@pytest.mark.parametrize(
    ("strategy", "challengers", "block", "phase", "weights", "mirror"),
    [
        ("canary", 1, {"steps": [5, 25, 100]}, "Progressing", {CHAMPION: 95, CHALLENGER: 5}, None),
        ("abTest", 1, {"split": {CHAMPION: 70, CHALLENGER: 30}}, "Progressing", {CHAMPION: 70, CHALLENGER: 30}, None),
        ("abTest", 2, {}, "Progressing", {CHAMPION: 34, CHALLENGER: 33, SECOND: 33}, None),
        ("bandit", 2, {}, "Progressing", {CHAMPION: 34, CHALLENGER: 33, SECOND: 33}, None),
        ("shadow", 1, {"mirrorPercent": 20}, "Shadowing", {CHAMPION: 100, CHALLENGER: 0}, 20),
    ],
)
def test_start_sets_phase_weights_and_routes_traffic(strategy, challengers, block, phase, weights, mirror):
    spec = make_spec(strategy, challengers=challengers, block=block)
    decision = decide(spec, ModelExperimentStatus(), first_read(), T0, generation=4)
    status = decision.status
    assert status.phase == phase
    assert status.weights == weights
    assert status.mirror_percent == mirror
    assert (status.started_at, status.step_started_at, status.step, status.observed_generation) == (T0, T0, 0, 4)
    assert status.strategy == strategy
    expected_mirror = Mirror(targets=(CHALLENGER,), percent=mirror) if mirror else None
    assert decision.actions == (SetTraffic(split=Split(weights), mirror=expected_mirror),)
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "Started")]
    assert [h.action for h in status.history] == ["start"]
    assert status.analysis.decision == "continue"
    assert "started" in status.analysis.reason


def test_pending_and_invalid_phases_start_fresh():
    spec = make_spec("canary")
    for phase in ("Pending", "Invalid"):
        status = decide(spec, ModelExperimentStatus(phase=phase), first_read(), T0).status
        assert status.phase == "Progressing"
        assert status.weights == {CHAMPION: 90, CHALLENGER: 10}


def test_expected_traffic_follows_status_and_defaults_to_champion():
    spec = make_spec("shadow")
    status = ModelExperimentStatus(weights={CHAMPION: 100, CHALLENGER: 0}, mirror_percent=50)
    assert expected_traffic(status, spec) == SetTraffic(
        split=Split({CHAMPION: 100, CHALLENGER: 0}), mirror=Mirror(targets=(CHALLENGER,), percent=50)
    )
    assert expected_traffic(ModelExperimentStatus(), spec).split.weights == {CHAMPION: 100, CHALLENGER: 0}


def test_terminal_phase_is_absorbing_and_manual_action_is_ignored_with_event():
    spec = make_spec("canary")
    status = ModelExperimentStatus(phase="RolledBack", weights={CHAMPION: 100, CHALLENGER: 0})
    quiet = decide(spec, status, observe(T0, {CHAMPION: (5, 10), CHALLENGER: (5, 10)}), T0, generation=9)
    assert quiet.status == status and quiet.actions == () and quiet.events == ()
    ignored = decide(spec, status, observe(T0, {}), T0, manual="promote")
    assert ignored.status == status and ignored.actions == ()
    assert [e.reason for e in ignored.events] == ["ManualActionIgnored"]

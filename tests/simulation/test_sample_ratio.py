"""The sample-ratio check in the real engine: late outcomes are not a mismatch, lost ones are."""

from __future__ import annotations

from engine.factories import make_spec
from mlrollouts.simulation import TrafficModel, simulate

CANARY = {"steps": [10, 25, 50, 100], "stepDuration": "15m", "minSamplesPerStep": 100}


def _pauses(summary) -> float:
    return sum(count for key, count in summary.reasons.items() if key.endswith("SampleRatioMismatch")) / summary.runs


def test_outcomes_five_minutes_late_cause_no_pause_when_the_delay_is_declared() -> None:
    spec = make_spec("canary", block=CANARY, statistics={"srmFeedbackDelay": "5m"})
    model = TrafficModel(users_per_minute=1000, baseline=0.1, delay_minutes=5)
    assert _pauses(simulate(spec, model, runs=30, seed=31)) == 0.0


def test_undeclared_late_outcomes_look_like_a_mismatch_at_every_step() -> None:
    """Why srmFeedbackDelay exists: the old split's late outcomes land in the new step's window."""
    spec = make_spec("canary", block=CANARY)
    model = TrafficModel(users_per_minute=1000, baseline=0.1, delay_minutes=5)
    assert _pauses(simulate(spec, model, runs=10, seed=32)) >= 0.5


def test_a_challenger_losing_a_fifth_of_its_outcomes_is_flagged() -> None:
    spec = make_spec("abTest", block={"maxDuration": "2h"})
    model = TrafficModel(users_per_minute=1000, baseline=0.1, lost=0.2)
    assert _pauses(simulate(spec, model, runs=30, seed=33)) >= 0.95


def test_the_bandit_is_checked_too() -> None:
    spec = make_spec("bandit", block={"maxDuration": "3h"})
    model = TrafficModel(users_per_minute=1000, baseline=0.1, lost=0.2)
    assert _pauses(simulate(spec, model, runs=10, seed=34)) >= 0.9

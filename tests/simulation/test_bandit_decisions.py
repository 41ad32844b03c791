"""The bandit's promotion rule against seeded simulations of the real engine: 14 days of looks, traffic that
follows the bandit's own allocation (examples/simulate/bandit-14d.yaml, looks every 30 minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlrollouts.api.experiment import parse_experiment
from mlrollouts.simulation import TrafficModel, simulate

SIMULATE = Path(__file__).resolve().parents[2] / "examples" / "simulate"


def _spec(name: str):
    return parse_experiment(yaml.safe_load((SIMULATE / name).read_text())).spec


@pytest.mark.parametrize(
    ("effect", "novelty", "promoted_at_most"),
    [
        (0.0, None, 0.05),  # A/A: before, 70 % declared a winner within a day
        (-0.02, None, 0.05),  # 2 % worse: before, promoted in 16 %
        (-0.05, (0.2, 360.0), 0.10),  # 12 % for 6 h, then 9.5 % vs 10 %: before, always promoted (32 min)
    ],
    ids=["a-a", "two-percent-worse", "novelty"],
)
def test_the_bandit_rarely_promotes_what_is_not_better(effect, novelty, promoted_at_most) -> None:
    model = TrafficModel(users_per_minute=100, baseline=0.1, effect=effect, novelty=novelty)
    summary = simulate(_spec("bandit-14d.yaml"), model, runs=30, seed=21)
    assert summary.outcomes.get("Promoted", 0.0) <= promoted_at_most, summary.reasons


def test_the_bandit_still_earns_its_keep() -> None:
    """0.72 vs 0.78, 10,000 users: a fixed 50/50 split loses 300 outcomes; the bandit must lose at most half."""
    model = TrafficModel(users_per_minute=100, baseline=0.72, effect=0.78 / 0.72 - 1)
    summary = simulate(_spec("bandit-seed-scenario.yaml"), model, runs=20, seed=22)
    assert summary.mean_regret <= 0.5 * 5000 * 0.06


def test_a_clearly_better_arm_is_promoted_after_min_duration() -> None:
    model = TrafficModel(users_per_minute=100, baseline=0.1, effect=0.3)
    summary = simulate(_spec("bandit-14d.yaml"), model, runs=10, seed=23)
    assert summary.outcomes.get("Promoted", 0.0) >= 0.9
    assert summary.median_minutes_to_decision >= 24 * 60  # minDuration 1d

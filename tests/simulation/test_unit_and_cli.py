"""The randomisation unit (ratio metrics, delta method) and `mlrollouts simulate` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import special

from mlrollouts.api.experiment import parse_experiment
from mlrollouts.cli.main import main
from mlrollouts.simulation import TrafficModel, simulate
from mlrollouts.stats.differences import RatioMoments, ratio_difference

ROOT = Path(__file__).resolve().parents[2]


def _events(rng: np.random.Generator, users: int, events: int, icc: float) -> np.ndarray:
    """users × events values whose correlation within a user is `icc` (variance 1)."""
    shared = rng.normal(0.0, np.sqrt(icc), (users, 1))
    return 1.0 + shared + rng.normal(0.0, np.sqrt(1.0 - icc), (users, events))


def _per_user(values: np.ndarray) -> RatioMoments:
    """Ratio moments with the user as the unit: x = events, y = sum of the user's values."""
    x, y = np.full(values.shape[0], float(values.shape[1])), values.sum(axis=1)
    return RatioMoments(len(x), x.sum(), y.sum(), x @ x, y @ y, x @ y)


def test_per_user_variance_keeps_the_error_rate_where_per_event_variance_does_not() -> None:
    """10 events per user, correlation 0.1: the per-event test rejects an A/A 15 % of the time, the user 5 %."""
    rng = np.random.default_rng(2022)
    runs, users, events, z = 1500, 400, 10, float(special.ndtri(0.975))
    per_event = per_user = 0
    for _ in range(runs):
        a, b = _events(rng, users, events, 0.1), _events(rng, users, events, 0.1)
        estimate, variance = ratio_difference(_per_user(a), _per_user(b))
        per_user += abs(estimate) / np.sqrt(variance) > z
        naive = a.var(ddof=1) / a.size + b.var(ddof=1) / b.size  # every event taken as independent
        per_event += abs(b.mean() - a.mean()) / np.sqrt(naive) > z
    assert 0.03 <= per_user / runs <= 0.07
    assert 0.12 <= per_event / runs <= 0.19


def test_simulate_json_is_the_engine_s_own_figures(capsys: pytest.CaptureFixture[str]) -> None:
    manifest = ROOT / "examples" / "canary-istio.yaml"
    argv = ["simulate", "-f", str(manifest), "--traffic", "3000", "--baseline", "0.05", "--effect", "-0.3"]
    assert main([*argv, "--runs", "10", "--seed", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    pinned = {"runs", "outcomes", "median_minutes_to_decision", "median_samples_to_decision"}
    assert set(result) == {*pinned, "mean_regret", "largest_challenger_weight"}
    spec = parse_experiment(yaml.safe_load(manifest.read_text())).spec
    direct = simulate(spec, TrafficModel(users_per_minute=3000, baseline=0.05, effect=-0.3), runs=10, seed=4)
    assert result == direct.as_json()
    assert result["outcomes"].get("RolledBack", 0) >= 0.9


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--traffic", "0"], "--traffic: users per minute must be a positive number"),
        (["--traffic", "10", "--drift", "a:b"], "--drift: write FROM:TO"),
        (["--traffic", "10", "--novelty", "0.2"], "--novelty: write EFFECT:MINUTES"),
        (["--traffic", "10", "--baseline", "1.5"], "--baseline: a proportion's baseline must be between 0 and 1"),
        (["--traffic", "10", "--baseline", "0.05", "--effect", "-1.5"], "--effect: a relative effect must be above -1"),
        (["--traffic", "10", "--baseline", "0.05", "--delay", "-3"], "--delay: minutes between 0 and 1440"),
        (["--traffic", "10", "--baseline", "0.05", "--lost", "1"], "--lost: a share in [0, 1)"),
        (
            ["--traffic", "10", "--baseline", "0.05", "--bad-rate", "0.5", "--bad-ratio", "3"],
            "--bad-rate: bad shares must stay in [0, 1]",
        ),
        (["--traffic", "10", "--baseline", "0.05", "--runs", "0"], "--runs: must be between 1 and 100000"),
        (
            ["--traffic", "10", "--baseline", "0.05", "--bad-guardrail", "p95"],
            "--bad-guardrail: name one of the ratio guardrails ['slow-requests', 'error-rate']",
        ),
        (["--traffic", "10", "--baseline", "0.05", "--hours", "0"], "--hours: must be above 0"),
        (["--traffic", "10", "--novelty", "0.2:-5"], "--novelty: the effect must be above -1 and the minutes positive"),
    ],
)
def test_simulate_bad_input_is_one_line(extra: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "-f", str(ROOT / "examples" / "canary-istio.yaml"), *extra]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_simulate_covers_ratio_guardrails(capsys: pytest.CaptureFixture[str]) -> None:
    """canary-istio.yaml at 200 req/s: a healthy challenger is promoted, one with three times the errors is not."""
    manifest = str(ROOT / "examples" / "canary-istio.yaml")
    argv = ["simulate", "-f", manifest, "--traffic", "12000", "--baseline", "0.05", "--runs", "4", "--json"]
    assert main([*argv, "--bad-ratio", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["outcomes"] == {"Promoted": 1.0}
    assert main([*argv, "--bad-ratio", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["outcomes"] == {"RolledBack": 1.0}


def test_simulate_says_at_which_step_a_bad_challenger_was_caught(capsys: pytest.CaptureFixture[str]) -> None:
    """Three times the errors on error-rate only, 10 req/s, 6 hours: held at the 1 % step, never advanced."""
    manifest = str(ROOT / "examples" / "canary-istio.yaml")
    argv = [
        "simulate",
        "-f",
        manifest,
        "--traffic",
        "600",
        "--baseline",
        "0.05",
        "--runs",
        "3",
        "--seed",
        "1",
        "--json",
    ]
    assert main([*argv, "--bad-ratio", "3", "--bad-guardrail", "error-rate", "--hours", "6"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["largest_challenger_weight"] == {"1": 1.0}
    assert "Promoted" not in result["outcomes"]

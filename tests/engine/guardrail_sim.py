"""Seeded simulations of the real engine with ratio guardrails: requests follow the engine's weights.

Each tick draws the requests of every variant (Poisson at `rps` x interval x weight), their errors and the
requests slower than the latency bound (Binomial), and hands the engine cumulative counters, as
Prometheus would return `sum(..._total)` and `sum(..._count) - sum(..._bucket{le="0.5"})`. Every
primary-metric outcome is a success by default, so the primary metric never decides and only the
guardrails can roll back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml

from mlrollouts.api import ModelExperimentSpec, ModelExperimentStatus
from mlrollouts.api.guardrails import count_key
from mlrollouts.engine import Observations, VariantObservation, decide

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def example_spec(name: str = "canary-istio.yaml") -> ModelExperimentSpec:
    return ModelExperimentSpec.model_validate(yaml.safe_load((ROOT / "examples" / name).read_text())["spec"])


@dataclass(frozen=True)
class Health:
    """Per request: chance of an error and of being slower than the latency bound."""

    error: float = 0.002
    slow: float = 0.01


@dataclass
class Outcome:
    phase: str | None
    reason: str | None
    ticks: int
    max_weight: int
    """Largest challenger weight reached."""
    weight_at_end: int
    """Challenger weight of the step the run ended in (for a rollback: the step it was caught in)."""
    status: ModelExperimentStatus = field(repr=False)


def run(
    spec: ModelExperimentSpec,
    health: dict[str, Health],
    rps: float,
    seed: int,
    max_ticks: int = 3000,
    success: float = 1.0,
) -> Outcome:
    """One experiment until a terminal phase or `max_ticks` ticks."""
    rng = np.random.default_rng(seed)
    interval = timedelta(seconds=spec.interval_seconds)
    names = spec.variant_names
    ratio = [g for g in spec.analysis.guardrails if g.kind == "ratio"]
    totals = {name: np.zeros(4) for name in names}  # requests, successes, errors, slow
    status = ModelExperimentStatus()
    max_weight, weight = 0, 0
    challenger = spec.challengers[0].name
    for index in range(max_ticks):
        now = T0 + index * interval
        for name in names:
            share = status.weights.get(name, 0) / 100
            n = int(rng.poisson(rps * spec.interval_seconds * share)) if share > 0 else 0
            h = health[name]
            totals[name] += (n, rng.binomial(n, success), rng.binomial(n, h.error), rng.binomial(n, h.slow))
        variants = {}
        for name in names:
            requests, successes, errors, slow = (float(v) for v in totals[name])
            counts = {"errors": errors, "slow": slow}
            values: dict[str, float | None] = {}
            for g in ratio:
                values[count_key(g.name, "bad")] = counts["slow" if "slow" in g.name else "errors"]
                values[count_key(g.name, "total")] = requests
            variants[name] = VariantObservation(samples={"successes": successes, "trials": requests}, guardrails=values)
        observations = Observations(time=now, variants=variants, cumulative_counters=True)
        weight = status.weights.get(challenger, 0)
        status = decide(spec, status, observations, now, generation=1).status
        max_weight = max(max_weight, status.weights.get(challenger, 0))
        if status.is_terminal:
            return Outcome(status.phase, status.reason, index + 1, max_weight, weight, status)
    return Outcome(status.phase, status.reason, max_ticks, max_weight, status.weights.get(challenger, 0), status)

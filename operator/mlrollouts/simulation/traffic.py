"""Synthetic traffic for `mlrollouts simulate`: users arrive, follow the engine's weights, produce outcomes.

Each analysis interval, Poisson(users per minute × minutes) users arrive and are split among the variants by
the weights the engine last set (multinomial), so a canary's challenger sees little traffic at its first step
and more later, exactly as in production. Outcomes: a proportion metric converts at the base rate (the
challengers at base × (1 + effect)); a mean metric draws Normal(base, sd) per user (challengers' mean times
(1 + effect)). A drift moves the base rate linearly from FROM to TO over the run's horizon, for everyone.
Every request is also "bad" (an error, or slower than a ratio guardrail's bound) with probability `bad_rate`
for the champion and bad_rate × bad_ratio for the challengers: the counts every ratio guardrail reads. The
counters are cumulative, as Prometheus counters are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TrafficModel:
    users_per_minute: float
    baseline: float
    """Base conversion rate (proportion) or mean (mean metric) of the champion."""
    effect: float = 0.0
    """Relative lift of every challenger: -0.2 is 20 % worse in absolute terms of the metric."""
    drift: tuple[float, float] | None = None
    """Base rate (or mean) at the start and at the horizon; overrides `baseline`."""
    horizon_minutes: float = 60.0
    metric_type: str = "proportion"
    standard_deviation: float | None = None
    """Per-user standard deviation of a mean metric (default: the baseline)."""
    novelty: tuple[float, float] | None = None
    """(relative effect, minutes): the challengers' effect for the first minutes, `effect` afterwards."""
    delay_minutes: float = 0.0
    """Outcomes are counted this long after their request (feedback that arrives late)."""
    lost: float = 0.0
    """Share of the challengers' outcomes that are never logged (a broken exporter): a sample ratio mismatch."""
    bad_rate: float = 0.002
    """Ratio guardrails: the champion's share of bad requests (errors, or requests slower than the bound)."""
    bad_ratio: float = 1.0
    """Ratio guardrails: the challengers' bad share is bad_ratio × the champion's (3 = three times the errors)."""
    bad_guardrail: str | None = None
    """Only this ratio guardrail sees the challengers' bad_ratio; the others read bad_rate for every variant."""

    def effect_at(self, minute: float) -> float:
        if self.novelty is not None and minute < self.novelty[1]:
            return self.novelty[0]
        return self.effect

    def base_at(self, minute: float) -> float:
        if self.drift is None:
            return self.baseline
        start, end = self.drift
        return start + (end - start) * min(1.0, max(0.0, minute / self.horizon_minutes))


@dataclass
class Counters:
    """Cumulative per-variant counters, as the metrics provider would read them."""

    values: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, variant: str, increments: Mapping[str, float]) -> None:
        current = self.values.setdefault(variant, {})
        for name, value in increments.items():
            current[name] = current.get(name, 0.0) + value


@dataclass(frozen=True)
class Interval:
    increments: dict[str, dict[str, float]]
    """Per variant: successes/trials, or count/sum/sumOfSquares."""
    regret: float
    """Outcomes lost against sending every user to the truly best variant."""


def generate(
    rng: np.random.Generator,
    model: TrafficModel,
    weights: Mapping[str, int],
    champion: str,
    minute: float,
    minutes: float,
) -> Interval:
    """One interval of traffic under `weights`."""
    names = list(weights)
    shares = np.array([max(0, weights[n]) for n in names], dtype=float)
    users = int(rng.poisson(model.users_per_minute * minutes))
    split = rng.multinomial(users, shares / shares.sum()) if shares.sum() > 0 else np.zeros(len(names), int)
    middle = minute + minutes / 2
    base = model.base_at(middle)
    challenger_level = base * (1.0 + model.effect_at(middle))
    best = max(base, challenger_level)
    increments: dict[str, dict[str, float]] = {}
    regret = 0.0
    for name, n in zip(names, split, strict=True):
        level = base if name == champion else challenger_level
        n = int(n)
        regret += n * (best - level)
        logged = int(rng.binomial(n, 1.0 - model.lost)) if model.lost and name != champion and n else n
        bad_share = min(1.0, model.bad_rate * (1.0 if name == champion else model.bad_ratio))
        requests = {"bad": float(rng.binomial(n, bad_share)) if n else 0.0, "requests": float(n)}
        if model.bad_guardrail is not None:  # the other ratio guardrails see a challenger as healthy
            requests["badAsChampion"] = float(rng.binomial(n, min(1.0, model.bad_rate))) if n else 0.0
        if model.metric_type == "proportion":
            rate = min(1.0, max(0.0, level))
            outcomes = {"successes": float(rng.binomial(logged, rate)) if logged else 0.0, "trials": float(logged)}
        else:
            sd = model.standard_deviation if model.standard_deviation is not None else abs(model.baseline) or 1.0
            draws = rng.normal(level, sd, logged)
            outcomes = {"count": float(logged), "sum": float(draws.sum()), "sumOfSquares": float(draws @ draws)}
        increments[name] = {**outcomes, **requests}
    return Interval(increments, regret)

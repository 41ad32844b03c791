"""Test specs for every strategy, observation builders and a small traffic simulator for the engine.

The simulator sends traffic where the engine's status says (weights), so scenarios exercise the loop the
controller runs: observe -> decide -> route. Randomness comes from a seeded numpy generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from mlrollouts.api import ModelExperimentSpec, ModelExperimentStatus
from mlrollouts.engine import Decision, Observations, VariantObservation, decide

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
CHAMPION, CHALLENGER, SECOND = "churn-v2", "churn-v3", "churn-v4"
PROPORTION = {
    "name": "retention",
    "type": "proportion",
    "successes": 'sum(model_outcomes_total{variant="{{variant}}",outcome="success"})',
    "trials": 'sum(model_outcomes_total{variant="{{variant}}"})',
}
MEAN = {
    "name": "revenue",
    "type": "mean",
    "count": 'sum(revenue_count{variant="{{variant}}"})',
    "sum": 'sum(revenue_sum{variant="{{variant}}"})',
    "sumOfSquares": 'sum(revenue_sumsq{variant="{{variant}}"})',
}
BLOCKS = {
    "canary": ("canary", {"steps": [10, 50, 100], "stepDuration": "10m", "minSamplesPerStep": 100}),
    "abTest": ("abTest", {"maxDuration": "14d"}),
    "shadow": ("shadow", {"mirrorPercent": 100, "duration": "1h"}),
    "bandit": ("bandit", {"minExploration": 0.05, "updateInterval": "5m", "minSamples": 500, "minDuration": "1h"}),
}


def latency(max_: float = 0.5, failure_limit: int = 3, **bounds: float) -> dict[str, Any]:
    return {"name": "p95-latency", "query": "q", "max": max_, "failureLimit": failure_limit, **bounds}


def error_rate(failure_limit: int = 2, **bounds: float) -> dict[str, Any]:
    return {"name": "error-rate", "query": "q", "failureLimit": failure_limit, **(bounds or {"maxIncrease": 0.01})}


def make_spec(
    strategy: str = "canary",
    *,
    challengers: int = 1,
    guardrails: list[dict[str, Any]] | None = None,
    statistics: Mapping[str, Any] | None = None,
    metric: Mapping[str, Any] | None = None,
    block: Mapping[str, Any] | None = None,
    **top: Any,
) -> ModelExperimentSpec:
    """A valid spec; `block` overrides fields of the strategy's block, `top` top-level fields (camelCase)."""
    key, defaults = BLOCKS[strategy]
    names = [CHALLENGER, SECOND, "churn-v5", "churn-v6"][:challengers]
    provider = {"provider": "gateway"}
    return ModelExperimentSpec.model_validate(
        {
            "strategy": strategy,
            "champion": {"name": CHAMPION, "service": CHAMPION},
            "challengers": [{"name": n, "service": n} for n in names],
            "traffic": provider,
            key: {**defaults, **(block or {})},
            "analysis": {
                "interval": "1m",
                "prometheus": {"address": "http://127.0.0.1:9090"},
                "primaryMetric": {**(MEAN if (metric or {}).get("type") == "mean" else PROPORTION), **(metric or {})},
                "guardrails": guardrails or [],
                "statistics": {"method": "sequential", **(statistics or {})},
            },
            **top,
        }
    )


def observe(
    time: datetime,
    counts: Mapping[str, tuple[float | None, float | None]],
    guardrails: Mapping[str, Mapping[str, float | None]] | None = None,
    *,
    cumulative: bool = False,
    errors: tuple[str, ...] = (),
) -> Observations:
    """Observations from (successes, trials) per variant and guardrail values per variant."""
    guardrails = guardrails or {}
    return Observations(
        time=time,
        variants={
            name: VariantObservation(
                samples=dict(zip(("successes", "trials"), counts[name], strict=True)) if name in counts else {},
                guardrails=dict(guardrails.get(name, {})),
            )
            for name in {**counts, **guardrails}
        },
        errors=errors,
        cumulative_counters=cumulative,
    )


def first_read(at: datetime = T0, spec: ModelExperimentSpec | None = None) -> Observations:
    """A complete first read: every query answered, the champion has data, the challengers none yet."""
    queries = ("count", "sum", "sumOfSquares") if spec and spec.analysis.primary_metric.type == "mean" else None
    if queries is None:
        return observe(at, {CHAMPION: (0, 0)})
    return Observations(time=at, variants={CHAMPION: VariantObservation(samples=dict.fromkeys(queries, 0.0))})


def started(spec: ModelExperimentSpec, at: datetime = T0, generation: int | None = 1) -> ModelExperimentStatus:
    return decide(spec, ModelExperimentStatus(), first_read(at, spec), at, generation=generation).status


GuardrailFn = Callable[[int, str], Mapping[str, float | None]]


@dataclass
class Simulation:
    """Traffic follows the engine's weights; outcomes follow `rates`; one decide() per tick."""

    spec: ModelExperimentSpec
    rates: Mapping[str, float]
    per_tick: int = 1000
    guardrails: GuardrailFn = lambda tick, variant: {}
    seed: int = 7
    interval: timedelta = timedelta(minutes=1)
    available: Callable[[int], bool] = lambda tick: True
    status: ModelExperimentStatus = field(default_factory=ModelExperimentStatus)
    decisions: list[Decision] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.totals = {name: [0, 0] for name in self.spec.variant_names}

    def tick(self, index: int) -> Decision:
        now = T0 + index * self.interval
        mirrored = bool(self.status.mirror_percent)
        for name in self.spec.variant_names:
            share = self.status.weights.get(name, 0) / 100
            if mirrored and name != self.spec.champion.name:
                share = self.status.mirror_percent / 100
            trials = int(self.rng.binomial(self.per_tick, share)) if share > 0 else 0
            self.totals[name][0] += int(self.rng.binomial(trials, self.rates[name])) if trials else 0
            self.totals[name][1] += trials
        if self.available(index):
            obs = observe(
                now,
                {name: tuple(total) for name, total in self.totals.items()},
                {name: self.guardrails(index, name) for name in self.spec.variant_names},
                cumulative=True,
            )
        else:
            obs = observe(now, {name: (None, None) for name in self.totals}, errors=("prometheus: timeout",))
        decision = decide(self.spec, self.status, obs, now, generation=1)
        self.status = decision.status
        self.decisions.append(decision)
        return decision

    def run(self, ticks: int) -> ModelExperimentStatus:
        """Tick until a terminal phase or `ticks` ticks."""
        for index in range(ticks):
            self.tick(index)
            if self.status.is_terminal:
                break
        return self.status

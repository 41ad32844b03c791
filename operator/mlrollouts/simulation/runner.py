"""Run the real engine (`engine.decide`, no second implementation) on simulated traffic, many times.

Each run starts the experiment, then every `analysis.interval` feeds the engine the cumulative counters that
`traffic.generate` produced under the weights the engine chose last, exactly the loop the controller runs
(observe -> decide -> route). A run ends at a terminal phase, at Paused/ReadyToPromote (autoPromote off), or
at the horizon (the strategy's own length: canary steps × stepDuration × 3, abTest/bandit maxDuration, shadow
duration × 1.5). Regret counts the outcomes lost against the truly best variant while the run lasts (a promoted
run stops counting). Ratio guardrails read simulated bad and total requests (`TrafficModel.bad_rate`,
`bad_ratio`; `bad_guardrail` confines the challengers' excess to one of them), so their rollbacks are measured
too; threshold guardrails read a healthy value. The largest challenger weight each run reached says where a
bad challenger was caught (a canary caught at its first step never carried more than 1 %).
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from mlrollouts.api import ModelExperimentSpec, ModelExperimentStatus, parse_duration
from mlrollouts.api.guardrails import Guardrail, count_key
from mlrollouts.engine import Observations, VariantObservation, decide
from mlrollouts.simulation.traffic import Counters, TrafficModel, generate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MAX_HORIZON = timedelta(days=30)


@dataclass(frozen=True)
class RunResult:
    outcome: str
    """Terminal phase, "ReadyToPromote", or the phase the run was left in at the horizon."""
    minutes: float
    samples: float
    """Trials (or observations) of all variants when the run ended."""
    reason: str | None
    regret: float
    """Outcomes lost against the truly best variant, over the run."""
    max_weight: int = 0
    """Largest weight any challenger reached during the run (%)."""


@dataclass(frozen=True)
class Summary:
    runs: int
    outcomes: dict[str, float]
    median_minutes_to_decision: float | None
    median_samples_to_decision: float | None
    reasons: dict[str, int]
    mean_regret: float
    largest_weight: dict[int, float]
    """Share of runs by the largest weight a challenger reached (%)."""

    def as_json(self) -> dict[str, object]:
        return {
            "runs": self.runs,
            "outcomes": self.outcomes,
            "median_minutes_to_decision": self.median_minutes_to_decision,
            "median_samples_to_decision": self.median_samples_to_decision,
            "mean_regret": round(self.mean_regret, 3),
            "largest_challenger_weight": {str(w): share for w, share in self.largest_weight.items()},
        }


DECIDED = frozenset({"Promoted", "RolledBack", "Inconclusive", "ReadyToPromote"})


def horizon(spec: ModelExperimentSpec) -> timedelta:
    if spec.canary is not None:
        length = parse_duration(spec.canary.step_duration) * len(spec.canary.steps) * 3
    elif spec.ab_test is not None:
        length = parse_duration(spec.ab_test.max_duration)
    elif spec.bandit is not None:
        length = parse_duration(spec.bandit.max_duration)
    else:
        length = parse_duration(spec.shadow.duration) * 1.5 if spec.shadow else MAX_HORIZON
    return min(MAX_HORIZON, length + timedelta(seconds=spec.interval_seconds))


def planned_length(spec: ModelExperimentSpec) -> timedelta:
    """The span a drift is spread over: the canary's steps, or the experiment's maximum duration."""
    if spec.canary is not None:
        return parse_duration(spec.canary.step_duration) * max(1, len(spec.canary.steps) - 1)
    return horizon(spec)


def healthy_value(guardrail: Guardrail) -> float:
    """A value inside every bound of a threshold guardrail (relative bounds hold: all variants are equal)."""
    if guardrail.max is not None and guardrail.min is not None:
        return (guardrail.max + guardrail.min) / 2
    if guardrail.max is not None:
        return guardrail.max / 2 if guardrail.max > 0 else guardrail.max - 1
    if guardrail.min is not None:
        return guardrail.min * 2 if guardrail.min > 0 else guardrail.min + 1
    return 0.1


def _guardrails(spec: ModelExperimentSpec, counts: dict[str, float], only: str | None) -> dict[str, float]:
    """Threshold guardrails read a healthy value; ratio guardrails the simulated bad and total requests."""
    values: dict[str, float] = {}
    for guardrail in spec.analysis.guardrails:
        if guardrail.kind == "ratio":
            bad = "bad" if only is None or guardrail.name == only else "badAsChampion"
            values[count_key(guardrail.name, "bad")] = counts.get(bad, 0.0)
            values[count_key(guardrail.name, "total")] = counts.get("requests", 0.0)
        else:
            values[guardrail.name] = healthy_value(guardrail)
    return values


def _observe(spec: ModelExperimentSpec, counters: Counters, now: datetime, only: str | None = None) -> Observations:
    zero = dict.fromkeys(("successes", "trials", "count", "sum", "sumOfSquares"), 0.0)
    variants = {}
    for name in spec.variant_names:
        counts = counters.values.get(name, {})
        variants[name] = VariantObservation(samples={**zero, **counts}, guardrails=_guardrails(spec, counts, only))
    return Observations(time=now, variants=variants, cumulative_counters=True)


def _outcome(status: ModelExperimentStatus) -> str | None:
    if status.is_terminal:
        return status.phase
    if status.phase == "Paused" and status.reason == "ReadyToPromote":
        return "ReadyToPromote"
    return None


def run_once(spec: ModelExperimentSpec, model: TrafficModel, seed: int, length: timedelta | None = None) -> RunResult:
    """One run until a decision or `length` (default: the strategy's horizon)."""
    rng = np.random.default_rng(seed)
    only = model.bad_guardrail
    interval = timedelta(seconds=spec.interval_seconds)
    minutes = interval.total_seconds() / 60
    counters = Counters()
    status = decide(spec, ModelExperimentStatus(), _observe(spec, counters, T0), T0, generation=1).status
    end, elapsed, regret = length or horizon(spec), timedelta(0), 0.0
    challengers = [c.name for c in spec.challengers]
    max_weight = 0
    late = max(0, round(model.delay_minutes / minutes)) if minutes > 0 else 0
    pending: deque[dict[str, dict[str, float]]] = deque()
    while elapsed < end:
        interval_traffic = generate(
            rng, model, status.weights, spec.champion.name, elapsed.total_seconds() / 60, minutes
        )
        regret += interval_traffic.regret
        pending.append(interval_traffic.increments)
        if len(pending) > late:  # the outcomes of `late` intervals ago are the ones counted now
            for name, increments in pending.popleft().items():
                counters.add(name, increments)
        elapsed += interval
        status = decide(spec, status, _observe(spec, counters, T0 + elapsed, only), T0 + elapsed, generation=1).status
        max_weight = max(max_weight, *(status.weights.get(name, 0) for name in challengers))
        if _outcome(status) is not None:
            break
    size = sum(v.get("trials", v.get("count", 0.0)) for v in counters.values.values())
    outcome = _outcome(status) or status.phase or "Pending"
    return RunResult(outcome, elapsed.total_seconds() / 60, size, status.reason, regret, max_weight)


def simulate(
    spec: ModelExperimentSpec,
    model: TrafficModel,
    runs: int,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    length: timedelta | None = None,
) -> Summary:
    """`runs` independent seeded runs; outcome fractions and medians over the runs that reached a decision."""
    results = []
    for index in range(runs):
        results.append(run_once(spec, model, seed * 1_000_003 + index, length))
        if progress is not None:
            progress(index + 1)
    counts = Counter(r.outcome for r in results)
    decided = [r for r in results if r.outcome in DECIDED]
    return Summary(
        runs=runs,
        outcomes={phase: round(count / runs, 4) for phase, count in sorted(counts.items())},
        median_minutes_to_decision=statistics.median(r.minutes for r in decided) if decided else None,
        median_samples_to_decision=statistics.median(r.samples for r in decided) if decided else None,
        reasons=dict(Counter(f"{r.outcome}/{r.reason}" for r in results)),
        mean_regret=statistics.fmean(r.regret for r in results),
        largest_weight={w: round(c / runs, 4) for w, c in sorted(Counter(r.max_weight for r in results).items())},
    )

"""Prometheus query results -> exact per-variant samples since the analysis started.

Two modes, chosen by the metrics provider (`Observations.cumulative_counters`):
- cumulative counters (queries without `{{window}}`): the raw counter is tracked per variant and query in
  `status.counters` as CounterState(baseline, last, offset). The first value seen is the baseline; a value
  below the previous one is a counter reset (process restart), whose lost total moves into `offset`, so
  since_start = last + offset - baseline stays exact across restarts.
- window queries (`increase(...[{{window}}])`): values are already since-start; `increase()` extrapolates, so
  counts are rounded to integers (sums stay floats).
Counts are clamped to be non-negative and successes to at most trials, so the statistics never see
impossible data. A variant's samples change only when all of its queries answered (never half a tick).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlrollouts.api.analysis import SAMPLE_QUERIES
from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import CounterState, ModelExperimentStatus, VariantSamples
from mlrollouts.engine.types import Observations

QUERY_FIELDS = {name: attr for queries in SAMPLE_QUERIES.values() for name, attr in queries}
COUNT_QUERIES = frozenset({"successes", "trials", "count"})


def sample_queries(spec: ModelExperimentSpec) -> tuple[str, ...]:
    return tuple(name for name, _ in SAMPLE_QUERIES[spec.analysis.primary_metric.type])


def usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def advance_counter(state: CounterState | None, value: float) -> CounterState:
    """The counter bookkeeping after reading `value`; a drop below the last value is a reset."""
    if state is None:
        return CounterState(baseline=value, last=value, offset=0.0)
    if value < state.last:
        return CounterState(baseline=state.baseline, last=value, offset=state.offset + state.last)
    return state.model_copy(update={"last": value})


def since_start(state: CounterState) -> float:
    return state.last + state.offset - state.baseline


@dataclass(frozen=True)
class SampleUpdate:
    samples: dict[str, VariantSamples]
    counters: dict[str, dict[str, CounterState]]
    missing: list[str] = field(default_factory=list)
    """Needed values that were unavailable, as "trials of churn-v3"."""


def _exact(values: Mapping[str, float]) -> VariantSamples:
    fields: dict[str, float] = {}
    for query, value in values.items():
        value = max(0.0, value)
        fields[QUERY_FIELDS[query]] = float(round(value)) if query in COUNT_QUERIES else value
    if "successes" in fields and "trials" in fields:
        fields["successes"] = min(fields["successes"], fields["trials"])
    return VariantSamples(**fields)


def update_samples(
    spec: ModelExperimentSpec, status: ModelExperimentStatus, observations: Observations, needed: set[str]
) -> SampleUpdate:
    """New samples and counters; `needed` variants must answer every query, others keep their last samples."""
    queries = sample_queries(spec)
    samples = dict(status.samples)
    counters = {variant: dict(states) for variant, states in status.counters.items()}
    missing: list[str] = []
    for variant in spec.variant_names:
        observed = observations.variants.get(variant)
        raw = {q: observed.samples.get(q) for q in queries} if observed is not None else dict.fromkeys(queries)
        absent = [q for q, v in raw.items() if not usable(v)]
        if absent:
            if variant in needed:
                missing.extend(f"{q} of {variant}" for q in absent)
            continue
        values: dict[str, float] = {q: float(v) for q, v in raw.items() if v is not None}
        if observations.cumulative_counters:
            states = counters.setdefault(variant, {})
            for query, value in values.items():
                states[query] = advance_counter(states.get(query), value)
            values = {query: since_start(states[query]) for query in queries}
        samples[variant] = _exact(values)
    return SampleUpdate(samples=samples, counters=counters, missing=missing)

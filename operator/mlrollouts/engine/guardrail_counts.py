"""Counts of ratio guardrails (bad and total events) per variant: since the analysis started and this step.

Read like the primary metric's samples (engine/samples.py): raw cumulative counters keep a baseline and a
reset offset in status (the same `advance_counter` bookkeeping), `increase(...[{{window}}])` values are
already since-start. `Tick.set_weights` copies `since_start` into `step_start`, so a step's counts are the
difference and each step is judged on the traffic it routed. Counts are rounded (increase() extrapolates)
and clamped so 0 <= bad <= total.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlrollouts.api.guardrails import COUNT_PARTS, Guardrail, count_key
from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import GuardrailCounts
from mlrollouts.engine.samples import advance_counter, since_start, usable
from mlrollouts.engine.types import Observations


def ratio_guardrails(spec: ModelExperimentSpec) -> list[Guardrail]:
    return [g for g in spec.analysis.guardrails if g.kind == "ratio"]


def missing_counts(spec: ModelExperimentSpec, observations: Observations, checked: Iterable[str]) -> list[str]:
    """Counts this check needs but did not get, as "error-rate.bad of churn-v3"."""
    missing = []
    for guardrail in ratio_guardrails(spec):
        variants = [*checked, spec.champion.name] if guardrail.is_relative else list(checked)
        for variant in variants:
            observed = observations.variants.get(variant)
            for part in COUNT_PARTS:
                key = count_key(guardrail.name, part)
                if observed is None or not usable(observed.guardrails.get(key)):
                    missing.append(f"{key} of {variant}")
    return missing


def update_counts(spec: ModelExperimentSpec, state: GuardrailCounts, observations: Observations) -> GuardrailCounts:
    """New bookkeeping after one read; a variant's guardrail keeps its last counts unless both answered."""
    counters = {variant: dict(states) for variant, states in state.counters.items()}
    totals = {variant: dict(values) for variant, values in state.since_start.items()}
    for guardrail in ratio_guardrails(spec):
        keys = [count_key(guardrail.name, part) for part in COUNT_PARTS]
        for variant in spec.variant_names:
            observed = observations.variants.get(variant)
            raw = [observed.guardrails.get(key) if observed is not None else None for key in keys]
            if not all(usable(value) for value in raw):
                continue
            values = [max(0.0, float(value)) for value in raw if value is not None]
            if not guardrail.counts_use_window:
                states = counters.setdefault(variant, {})
                for key, value in zip(keys, values, strict=True):
                    states[key] = advance_counter(states.get(key), value)
                values = [since_start(states[key]) for key in keys]
            bad, total = (float(round(value)) for value in values)
            totals.setdefault(variant, {}).update({keys[0]: min(bad, total), keys[1]: total})
    return state.model_copy(update={"counters": counters, "since_start": totals})


def step_counts(state: GuardrailCounts, guardrail: str, variant: str) -> tuple[float, float]:
    """(bad, total) of `variant` since the current step began."""
    now = state.since_start.get(variant, {})
    start = state.step_start.get(variant, {})
    bad_key, total_key = (count_key(guardrail, part) for part in COUNT_PARTS)
    total = max(0.0, now.get(total_key, 0.0) - start.get(total_key, 0.0))
    bad = max(0.0, now.get(bad_key, 0.0) - start.get(bad_key, 0.0))
    return min(bad, total), total

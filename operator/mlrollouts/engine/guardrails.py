"""Guardrails: hard limits on a challenger's health (latency, errors), independent of the primary metric.

Two forms (api/guardrails.py). Ratio guardrails (`type: ratio`, counts judged by a sequential test) are
checked in engine/ratio_guardrails.py. Threshold guardrails (`type: threshold`, one value per check):
a check fails when any checked challenger breaks a bound: max / min (absolute), maxIncrease (challenger -
champion > maxIncrease) or maxRatio (challenger / champion > maxRatio). When the champion's value is 0 a
ratio is undefined: any positive challenger value then fails maxRatio (it is infinitely worse), 0 passes.
`failureLimit` consecutive failing checks roll back; one passing check resets the count. Only challengers are
checked: the champion breaking an absolute bound is not the challenger's fault.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mlrollouts.api.spec import Guardrail, ModelExperimentSpec
from mlrollouts.api.status import GuardrailCounts, GuardrailStatus
from mlrollouts.engine.guardrail_counts import missing_counts
from mlrollouts.engine.ratio_guardrails import check_ratio
from mlrollouts.engine.samples import usable
from mlrollouts.engine.tick import fmt, ordinal
from mlrollouts.engine.types import Observations


def threshold_text(guardrail: Guardrail) -> str:
    parts = []
    if guardrail.max is not None:
        parts.append(f"max {fmt(guardrail.max)}")
    if guardrail.min is not None:
        parts.append(f"min {fmt(guardrail.min)}")
    if guardrail.max_increase is not None:
        parts.append(f"maxIncrease {fmt(guardrail.max_increase)} over champion")
    if guardrail.max_ratio is not None:
        parts.append(f"maxRatio {fmt(guardrail.max_ratio)} of champion")
    return ", ".join(parts)


def breaches(guardrail: Guardrail, value: float, champion: float | None) -> list[str]:
    """The bounds `value` breaks, each as "0.62 > max 0.5"."""
    broken = []
    if guardrail.max is not None and value > guardrail.max:
        broken.append(f"{fmt(value)} > max {fmt(guardrail.max)}")
    if guardrail.min is not None and value < guardrail.min:
        broken.append(f"{fmt(value)} < min {fmt(guardrail.min)}")
    if champion is not None and guardrail.max_increase is not None and value - champion > guardrail.max_increase:
        broken.append(
            f"{fmt(value)} is {fmt(value - champion)} above champion {fmt(champion)} "
            f"> maxIncrease {fmt(guardrail.max_increase)}"
        )
    if champion is not None and guardrail.max_ratio is not None:
        ratio = value / champion if champion > 0 else (float("inf") if value > 0 else 0.0)
        if ratio > guardrail.max_ratio:
            broken.append(
                f"{fmt(value)} is {fmt(ratio)}x champion {fmt(champion)} > maxRatio {fmt(guardrail.max_ratio)}"
            )
    return broken


def missing_values(spec: ModelExperimentSpec, observations: Observations, checked: Iterable[str]) -> list[str]:
    """Guardrail values this check needs but did not get, as "p95-latency of churn-v3"."""
    missing = missing_counts(spec, observations, checked)
    for guardrail in spec.analysis.guardrails:
        if guardrail.kind == "ratio":
            continue
        variants = [*checked, spec.champion.name] if guardrail.is_relative else list(checked)
        for variant in variants:
            observed = observations.variants.get(variant)
            if observed is None or not usable(observed.guardrails.get(guardrail.name)):
                missing.append(f"{guardrail.name} of {variant}")
    return missing


@dataclass(frozen=True)
class GuardrailCheck:
    statuses: list[GuardrailStatus]
    newly_failing: list[str]
    recovered: list[str]
    breach: str | None
    """Reason sentence of the first guardrail that reached its failure limit."""

    @property
    def healthy(self) -> bool:
        return all(s.healthy for s in self.statuses)


def evaluate(
    spec: ModelExperimentSpec,
    previous: list[GuardrailStatus],
    observations: Observations,
    checked: list[str],
    ratio_counts: GuardrailCounts | None = None,
) -> GuardrailCheck:
    """One check of every guardrail (all values must be available; see `missing_values`).

    `ratio_counts` are the ratio guardrails' counts, already updated with `observations`."""
    counts = {s.name: s.consecutive_failures for s in previous}
    was_healthy = {s.name: s.healthy for s in previous}
    statuses, newly_failing, recovered = [], [], []
    breach = None
    for guardrail in spec.analysis.guardrails:
        if guardrail.kind == "ratio":
            ratio = check_ratio(
                guardrail, ratio_counts or GuardrailCounts(), spec.champion.name, checked, threshold_text(guardrail)
            )
            statuses.append(ratio.status)
            if ratio.problem is not None and was_healthy.get(guardrail.name, True):
                newly_failing.append(ratio.problem)
            if ratio.problem is None and not was_healthy.get(guardrail.name, True):
                recovered.append(f"{guardrail.name} is back within {threshold_text(guardrail)}")
            if ratio.breach and breach is None:
                breach = ratio.problem
            continue
        champion = observations.variants[spec.champion.name].guardrails.get(guardrail.name)
        champion = champion if usable(champion) else None
        worst_variant, worst_value, problems = None, None, []
        for variant in checked:
            value = observations.variants[variant].guardrails[guardrail.name]
            broken = breaches(guardrail, value, champion)
            if worst_variant is None or (broken and not problems):
                worst_variant, worst_value = variant, value
            if broken:
                problems.append(f"{guardrail.name} of {variant} {' and '.join(broken)}")
        failures = counts.get(guardrail.name, 0) + 1 if problems else 0
        if problems and failures == 1:
            newly_failing.append("; ".join(problems))
        if not problems and counts.get(guardrail.name, 0) > 0:
            recovered.append(f"{guardrail.name} is back within {threshold_text(guardrail)}")
        if problems and failures >= guardrail.limit and breach is None:
            breach = f"{'; '.join(problems)}, {ordinal(failures)} consecutive failing check (limit {guardrail.limit})"
        statuses.append(
            GuardrailStatus(
                name=guardrail.name,
                variant=worst_variant,
                value=worst_value,
                champion_value=champion,
                threshold=threshold_text(guardrail),
                consecutive_failures=failures,
                healthy=not problems,
            )
        )
    return GuardrailCheck(statuses=statuses, newly_failing=newly_failing, recovered=recovered, breach=breach)

"""The primary metric, one challenger against the champion, per statistics method.

- sequential: the mSPRT always-valid p-value (Johari et al.) on the epoch-combined difference (`epochs`),
  with its running minimum and the running intersection of its intervals kept per challenger in
  `status.evidence`, so looking every tick never inflates the false-positive rate; the verdict's direction
  comes from that confidence sequence, never from the current estimate.
- fixedHorizon: z-test (proportions) or Welch's t-test (means), valid only at the planned sample size.
- bayesian: in `bayes` (a spike-and-slab posterior on the same epoch-combined difference).
A/B/n: sequential and fixed p-values are Holm-adjusted across challengers before a verdict.
Direction: `primaryMetric.direction: decrease` flips what "better" means everywhere.
"""

from __future__ import annotations

import math

from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import Comparison, Evidence, ModelExperimentStatus, VariantSamples
from mlrollouts.engine import epochs
from mlrollouts.stats import (
    DEFAULT_RELATIVE_MDE,
    MeanStats,
    SequentialState,
    default_tau,
    holm_adjust,
    msprt,
    two_proportion_ztest,
    welch_ttest_from_sums,
)

MIN_SAMPLES_PER_ARM = 30
"""Trials (or observations, or users) each arm needs before the first look; documented in docs/statistics.md."""


def ready(spec: ModelExperimentSpec, samples: VariantSamples | None) -> bool:
    """Enough data for any comparison: MIN_SAMPLES_PER_ARM trials, observations or users."""
    return samples is not None and samples.size >= MIN_SAMPLES_PER_ARM


def mean_of(spec: ModelExperimentSpec, samples: VariantSamples) -> float:
    kind = spec.analysis.primary_metric.type
    if kind == "proportion":
        return (samples.successes or 0.0) / samples.trials if samples.trials else 0.0
    if kind == "ratio":
        return (samples.numerator or 0.0) / samples.denominator if samples.denominator else 0.0
    return MeanStats.from_sums(samples.count or 0.0, samples.sum or 0.0, samples.sum_of_squares or 0.0).mean


def _counts(samples: VariantSamples) -> tuple[int, int]:
    return int(samples.successes or 0), int(samples.trials or 0)


def _means(samples: VariantSamples) -> MeanStats:
    return MeanStats.from_sums(samples.count or 0.0, samples.sum or 0.0, samples.sum_of_squares or 0.0)


def _good(spec: ModelExperimentSpec, difference: float) -> float:
    """The difference signed so that positive is better."""
    return difference if spec.analysis.primary_metric.direction == "increase" else -difference


def _lift(champion_mean: float, challenger_mean: float) -> float | None:
    return challenger_mean / champion_mean - 1.0 if champion_mean != 0 else None


def _interval(low: float, high: float) -> list[float] | None:
    return [low, high] if math.isfinite(low) and math.isfinite(high) else None


def planned_tau(spec: ModelExperimentSpec) -> float | None:
    metric = spec.analysis.primary_metric
    if metric.baseline is None:
        return None
    return default_tau(metric.baseline, metric.minimum_detectable_effect)


def first_look(spec: ModelExperimentSpec, status: ModelExperimentStatus, name: str):
    """(champion samples, estimate, variance, carried evidence, tau) once both arms are ready, else None."""
    champion, challenger = status.samples.get(spec.champion.name), status.samples.get(name)
    if not (ready(spec, champion) and ready(spec, challenger)):
        return None
    current = epochs.combined(spec, status, name)
    if current is None:
        return None
    prior = status.evidence.get(name) or Evidence()
    tau = prior.tau or planned_tau(spec) or fallback_tau(spec, champion)
    return champion, current[0], current[1], prior, tau


def sequential(
    spec: ModelExperimentSpec, status: ModelExperimentStatus, name: str
) -> tuple[Comparison, Evidence] | None:
    """Always-valid comparison on the epoch-combined difference, and the evidence to carry to the next look.

    None until both arms have MIN_SAMPLES_PER_ARM (a look on a handful of samples is no look at all).
    """
    look = first_look(spec, status, name)
    if look is None:
        return None
    champion, estimate, variance, prior, tau = look
    alpha = spec.analysis.statistics.alpha
    result = msprt(estimate, variance, tau, alpha=alpha)
    low, high = prior.confidence_interval
    low, high = -math.inf if low is None else low, math.inf if high is None else high
    state = SequentialState(prior.p_value, low, high, prior.looks, prior.restarts).update(
        result.p_value, (result.ci_low, result.ci_high)
    )
    if state.restarts > prior.restarts:
        # The intervals became disjoint: the effect changed. Evidence and data restart from this look on.
        evidence = Evidence(restarts=state.restarts, tau=tau, since=dict(status.samples))
        comparison = Comparison(challenger=name, p_value=1.0, relative_lift=None, verdict="undecided")
        return comparison, evidence
    evidence = prior.model_copy(
        update={
            "p_value": state.p_value,
            "confidence_interval": [_finite(state.ci_low), _finite(state.ci_high)],
            "looks": state.looks,
            "tau": tau,
        }
    )
    base = mean_of(spec, champion)
    verdict = _direction_verdict(spec, state.sign()) if state.p_value < alpha else "undecided"
    comparison = Comparison(
        challenger=name,
        p_value=state.p_value,
        confidence_interval=_interval(state.ci_low, state.ci_high),
        relative_lift=estimate / base if base else None,
        verdict=verdict,
    )
    return comparison, evidence


def non_inferior(spec: ModelExperimentSpec, status: ModelExperimentStatus, name: str) -> tuple[bool, str]:
    """Has the confidence sequence ruled out a loss larger than the margin? And the sentence saying so."""
    metric = spec.analysis.primary_metric
    evidence, champion = status.evidence.get(name), status.samples.get(spec.champion.name)
    if evidence is None or champion is None:
        return False, "non-inferiority not yet shown (no comparison yet)"
    relative = metric.non_inferiority_margin or metric.minimum_detectable_effect
    margin = relative * abs(mean_of(spec, champion))
    low, high = evidence.confidence_interval
    worst = low if metric.direction == "increase" else (None if high is None else -high)
    shown = worst is not None and worst > -margin
    bound = "unbounded" if worst is None else f"{worst:+.4g}"
    if shown:
        return True, f"a loss beyond the {100 * relative:.3g}% margin ({margin:.4g}) ruled out (worst case {bound})"
    return False, (
        f"a loss beyond the {100 * relative:.3g}% margin ({margin:.4g}) not yet ruled out (worst case {bound}; "
        "more traffic narrows it, primaryMetric.nonInferiorityMargin sets it)"
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def fallback_tau(spec: ModelExperimentSpec, champion: VariantSamples) -> float:
    """Without a planned baseline: DEFAULT_RELATIVE_MDE of the champion's level at the first look."""
    level = abs(mean_of(spec, champion))
    return DEFAULT_RELATIVE_MDE * level if level > 0 else DEFAULT_RELATIVE_MDE


def _direction_verdict(spec: ModelExperimentSpec, sign: int) -> str:
    if sign == 0:
        return "undecided"
    return "better" if _good(spec, float(sign)) > 0 else "worse"


def fixed_horizon(spec: ModelExperimentSpec, champion: VariantSamples, challenger: VariantSamples, name: str):
    alpha = spec.analysis.statistics.alpha
    if spec.analysis.primary_metric.type == "proportion":
        (s_a, n_a), (s_b, n_b) = _counts(champion), _counts(challenger)
        result = two_proportion_ztest(s_a, n_a, s_b, n_b, alpha=alpha)
    else:
        result = welch_ttest_from_sums(_means(champion), _means(challenger), alpha=alpha)
    lift = result.relative_lift if math.isfinite(result.relative_lift) else None
    return Comparison(
        challenger=name,
        p_value=result.p_value,
        confidence_interval=_interval(result.ci_low, result.ci_high),
        relative_lift=lift,
        verdict=_p_verdict(spec, result.p_value, result.difference, alpha),
    )


def _p_verdict(spec: ModelExperimentSpec, p_value: float, difference: float, alpha: float) -> str:
    if p_value >= alpha or difference == 0:
        return "undecided"
    return "better" if _good(spec, difference) > 0 else "worse"


def holm(spec: ModelExperimentSpec, comparisons: list[Comparison], differences: dict[str, float]) -> list[Comparison]:
    """Holm-adjust p-values across challengers and redo the verdicts on the adjusted values."""
    with_p = [c for c in comparisons if c.p_value is not None]
    adjusted = dict(zip([c.challenger for c in with_p], holm_adjust([c.p_value for c in with_p]), strict=True))
    alpha = spec.analysis.statistics.alpha
    result = []
    for c in comparisons:
        if c.challenger not in adjusted:
            result.append(c)
            continue
        p = adjusted[c.challenger]
        verdict = _p_verdict(spec, p, differences.get(c.challenger, 0.0), alpha)
        result.append(c.model_copy(update={"adjusted_p_value": p, "verdict": verdict}))
    return result


def headline(comparisons: list[Comparison]) -> Comparison | None:
    """The comparison shown in the summary: the strongest evidence among challengers."""
    if not comparisons:
        return None

    def strength(c: Comparison) -> tuple[float, float]:
        p = c.adjusted_p_value if c.adjusted_p_value is not None else c.p_value
        return (-(p if p is not None else 1.0), c.probability_better or 0.0)

    return max(comparisons, key=strength)

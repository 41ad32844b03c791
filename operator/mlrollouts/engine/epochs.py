"""Epochs: the primary metric is compared within periods of constant allocation, then combined.

An epoch opens when the weights change (`Tick.set_weights`) and closes at the next change. Within an epoch
both arms see the same traffic mix at the same time, so each epoch's difference is unbiased even when the
base rate drifts; pooling counts across a weight change is not (a canary that gets most of its traffic late,
while a shared rate falls, looks worse: Simpson's paradox). Closed epochs are folded into
`status.evidence[challenger].epochs` (three sums, so a bandit's many epochs cost no space); the open epoch is
added at every look. The combination is `stats.Stratified` (fixed weights n_a n_b / (n_a + n_b)), documented
in docs/statistics.md. After a restart of the evidence (the effect changed, see `analysis.sequential`) a
challenger's data starts at the restart (`Evidence.since`) instead of at the open epoch's start.

Ratio metrics (per-user sums of x, y, x², y², xy) are compared on their totals since the start: a user's
events span epochs, so per-epoch differences of per-user squares would not be per-user squares.
"""

from __future__ import annotations

from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import EpochTotals, Evidence, ModelExperimentStatus, VariantSamples
from mlrollouts.stats import MeanStats
from mlrollouts.stats.differences import RatioMoments, mean_difference, proportion_difference, ratio_difference
from mlrollouts.stats.sequential import Stratified, harmonic_weight


def difference(spec: ModelExperimentSpec, champion: VariantSamples, challenger: VariantSamples):
    """(estimate, variance, weight) of challenger minus champion in one epoch; None with too little data."""
    kind = spec.analysis.primary_metric.type
    if kind == "proportion":
        n_a, n_b = champion.trials or 0.0, challenger.trials or 0.0
        if n_a <= 0 or n_b <= 0:
            return None
        estimate, variance = proportion_difference(champion.successes or 0.0, n_a, challenger.successes or 0.0, n_b)
        return estimate, variance, harmonic_weight(n_a, n_b)
    if (champion.count or 0) < 2 or (challenger.count or 0) < 2:
        return None
    if kind == "ratio":
        a, b = _ratio(champion), _ratio(challenger)
        if a.x <= 0 or b.x <= 0:
            return None
        estimate, variance = ratio_difference(a, b)
        return estimate, variance, harmonic_weight(a.n, b.n)
    a, b = _moments(champion), _moments(challenger)
    estimate, variance = mean_difference(a, b)
    return estimate, variance, harmonic_weight(a.n, b.n)


def _moments(s: VariantSamples) -> MeanStats:
    return MeanStats.from_sums(s.count or 0.0, s.sum or 0.0, s.sum_of_squares or 0.0)


def _ratio(s: VariantSamples) -> RatioMoments:
    return RatioMoments(
        s.count or 0.0,
        s.denominator or 0.0,
        s.numerator or 0.0,
        s.denominator_squares or 0.0,
        s.numerator_squares or 0.0,
        s.cross_products or 0.0,
    )


def _stratified(totals: EpochTotals) -> Stratified:
    return Stratified(totals.weight, totals.weighted_estimate, totals.weighted_variance, totals.epochs)


def _open_epoch(spec: ModelExperimentSpec, status: ModelExperimentStatus, challenger: str):
    champion_name = spec.champion.name
    if champion_name not in status.samples or challenger not in status.samples:
        return None
    evidence = status.evidence.get(challenger)
    start = evidence.since if evidence is not None and evidence.since is not None else status.epoch_start_samples
    return difference(
        spec,
        status.samples[champion_name].minus(start.get(champion_name)),
        status.samples[challenger].minus(start.get(challenger)),
    )


def close_epoch(spec: ModelExperimentSpec, status: ModelExperimentStatus) -> dict[str, object]:
    """Status fields for a weight change: the open epoch folded into each challenger's evidence, a new one opened."""
    if spec.analysis.primary_metric.type == "ratio":
        return {}
    evidence = dict(status.evidence)
    for challenger in (c.name for c in spec.challengers):
        current = _open_epoch(spec, status, challenger)
        prior = evidence.get(challenger) or Evidence()
        combined = _stratified(prior.epochs).add(*current) if current is not None else _stratified(prior.epochs)
        totals = EpochTotals(
            weight=combined.weight,
            weighted_estimate=combined.weighted_estimate,
            weighted_variance=combined.weighted_variance,
            epochs=combined.epochs,
        )
        evidence[challenger] = prior.model_copy(update={"epochs": totals, "since": None})
    return {"evidence": evidence, "epoch_start_samples": dict(status.samples)}


def combined(spec: ModelExperimentSpec, status: ModelExperimentStatus, challenger: str):
    """(estimate, variance, epochs) of challenger minus champion over every epoch so far; None without data."""
    if spec.analysis.primary_metric.type == "ratio":
        champion = status.samples.get(spec.champion.name)
        other = status.samples.get(challenger)
        current = difference(spec, champion, other) if champion and other else None
        return None if current is None else (current[0], current[1], 1)
    evidence = status.evidence.get(challenger) or Evidence()
    stratified = _stratified(evidence.epochs)
    current = _open_epoch(spec, status, challenger)
    if current is not None:
        stratified = stratified.add(*current)
    result = stratified.combined()
    return None if result is None else (*result, stratified.epochs)

"""The bayesian method: P(better) and expected loss from a spike-and-slab posterior (`stats.spike_slab`).

Same data as the sequential method (the epoch-combined difference, `epochs`), same slab scale tau (fixed at the
first look in `status.evidence`). Each challenger's prior probability of differing from the champion is
1 / (1 + k) for k challengers, so A/B/n does not multiply the error: the chance that any look of an A/A test
ever shows a challenger "better" is at most (1 - p) / p for probabilityThreshold p (docs/statistics.md).
Better: P(better) >= probabilityThreshold and the expected loss of switching < lossThreshold; worse: P(worse)
>= probabilityThreshold and the expected loss of keeping the champion < lossThreshold. Losses are relative to
the champion's value (0.001 = 0.1 % of it), so a threshold means the same for any metric's scale. Mean
metrics use the t approximation of the normal-inverse-gamma posterior (Welch's degrees of freedom); nothing
is judged below MIN_SAMPLES_PER_ARM per arm.
"""

from __future__ import annotations

from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import Comparison, Evidence, ModelExperimentStatus, VariantSamples
from mlrollouts.engine.analysis import first_look, mean_of
from mlrollouts.stats import MeanStats
from mlrollouts.stats.spike_slab import spike_slab


def _welch_df(champion: VariantSamples, challenger: VariantSamples) -> float:
    a = MeanStats.from_sums(champion.count or 0.0, champion.sum or 0.0, champion.sum_of_squares or 0.0)
    b = MeanStats.from_sums(challenger.count or 0.0, challenger.sum or 0.0, challenger.sum_of_squares or 0.0)
    va, vb = a.var / a.n, b.var / b.n
    if va + vb == 0:
        return float(a.n + b.n - 2)
    return (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))


def bayesian(spec: ModelExperimentSpec, status: ModelExperimentStatus, name: str) -> tuple[Comparison, Evidence] | None:
    look = first_look(spec, status, name)
    if look is None:
        return None
    champion, estimate, variance, prior, tau = look
    df = _welch_df(champion, status.samples[name]) if spec.analysis.primary_metric.type == "mean" else None
    posterior = spike_slab(estimate, variance, tau, prior_differs=1.0 / (1 + len(spec.challengers)), df=df)
    increase = spec.analysis.primary_metric.direction == "increase"
    p_better = posterior.probability_positive if increase else posterior.probability_negative
    p_worse = posterior.probability_negative if increase else posterior.probability_positive
    level = abs(mean_of(spec, champion)) or 1.0
    higher, lower = posterior.loss_if_higher_chosen / level, posterior.loss_if_lower_chosen / level
    loss_switch, loss_keep = (higher, lower) if increase else (lower, higher)
    stats = spec.analysis.statistics
    verdict = "undecided"
    if p_better >= stats.probability_threshold and loss_switch < stats.loss_threshold:
        verdict = "better"
    elif p_worse >= stats.probability_threshold and loss_keep < stats.loss_threshold:
        verdict = "worse"
    comparison = Comparison(
        challenger=name,
        probability_better=p_better,
        expected_loss=loss_switch,
        relative_lift=estimate / level,
        verdict=verdict,
    )
    return comparison, prior.model_copy(update={"tau": tau, "looks": prior.looks + 1})

"""The A/B sample-size plan: how many trials each variant needs, and when that will be reached.

Method: the sequential (always-valid) test needs more samples than a fixed-horizon one for the same power;
its plan is `stats.planning.sequential_sample_size`, the n at which a single look reaches the power.
Baseline: `primaryMetric.baseline` when given, else the champion's observed value once it has
MIN_BASELINE_TRIALS trials. Alpha is Bonferroni-split across k challengers (alpha / k), a conservative
planning bound for the Holm-adjusted tests that follow. Once computed, requiredPerVariant is frozen:
a fixed-horizon test must not move its own finish line as data arrives. The ETA is re-estimated every
tick from the slowest variant's observed trials per hour.
"""

from __future__ import annotations

from datetime import timedelta

from mlrollouts.api.status import Plan
from mlrollouts.engine import analysis
from mlrollouts.engine.tick import Tick
from mlrollouts.stats import MeanStats, default_tau, sample_size_means, sample_size_proportions
from mlrollouts.stats.planning import sequential_sample_size

MIN_BASELINE_TRIALS = 100


def _required(tick: Tick) -> tuple[int, float] | None:
    spec = tick.spec
    metric, stats = spec.analysis.primary_metric, spec.analysis.statistics
    alpha = stats.alpha / len(spec.challengers)
    champion = tick.status.samples.get(spec.champion.name)
    observed = champion is not None and champion.size >= MIN_BASELINE_TRIALS
    sequential = stats.method == "sequential"
    mde = metric.minimum_detectable_effect
    try:
        if metric.type == "proportion":
            baseline = metric.baseline if metric.baseline is not None else None
            if baseline is None and observed:
                baseline = analysis.mean_of(spec, champion)
            if sequential:
                variance = baseline * (1.0 - baseline)
                size = sequential_sample_size(
                    variance, baseline * mde, tau=default_tau(baseline, mde), alpha=alpha, power=stats.power
                )
                return size, baseline
            return sample_size_proportions(baseline, mde, alpha=alpha, power=stats.power), baseline
        if metric.type != "mean":
            return None
        moments = MeanStats.from_sums(champion.count, champion.sum, champion.sum_of_squares) if observed else None
        baseline = metric.baseline if metric.baseline is not None else (moments.mean if moments else None)
        std = (
            metric.standard_deviation
            if metric.standard_deviation is not None
            else (moments.var**0.5 if moments else None)
        )
        if baseline is None or not std:
            return None
        mde_abs = baseline * mde
        if sequential:
            return sequential_sample_size(
                std * std, mde_abs, tau=abs(mde_abs), alpha=alpha, power=stats.power
            ), baseline
        return sample_size_means(std, mde_abs, alpha=alpha, power=stats.power), baseline
    except (TypeError, ValueError):
        return None


MAX_ETA_HOURS = 100 * 365 * 24


def update_plan(tick: Tick) -> Plan | None:
    plan = tick.status.plan or Plan()
    if plan.required_per_variant is None:
        required = _required(tick)
        if required is None:
            return None
        plan = plan.model_copy(update={"required_per_variant": required[0], "baseline": required[1]})
    active = [n for n in tick.spec.variant_names if tick.status.weights.get(n, 0) > 0]
    hours = (tick.now - (tick.status.started_at or tick.now)).total_seconds() / 3600
    sizes = [tick.status.samples[n].size if n in tick.status.samples else 0.0 for n in active]
    if hours > 0 and sizes and min(sizes) > 0:
        rate = min(sizes) / hours
        remaining_hours = max(0.0, plan.required_per_variant - min(sizes)) / rate
        # Beyond ~a century there is no useful date (and past year 9999 there is no datetime at all).
        eta = tick.now + timedelta(hours=remaining_hours) if remaining_hours < MAX_ETA_HOURS else None
        plan = plan.model_copy(update={"observed_per_hour": rate, "estimated_completion": eta})
    tick.update(plan=plan)
    return plan

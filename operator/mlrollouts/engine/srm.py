"""Sample ratio mismatch: do the trials arrive in the proportions the weights ask for?

An always-valid test (Lindon & Malek 2022, `stats.srm_log_bayes_factor`): one window per epoch (period of
constant weights), each judged against the weights in force; the log Bayes factors of closed windows add up
(`status.srmLogEvidence`), since a product of per-epoch martingales is a martingale, and the open window's is
added at every check. The SRM p-value is min(1, 1 / exp(total)); by Ville's inequality the chance that it ever
falls below srmPValue in an experiment with no mismatch is at most srmPValue, however often it is checked
(re-testing chi-square every minute false-alarmed in 1.9 % of A/A days). Metrics lag routing and outcomes lag
requests, so the trials counted just after a change still follow the old split: the window opens only
max(SETTLE_INTERVALS analysis intervals, statistics.srmFeedbackDelay) after the change, with the counts of that
moment as its baseline; delayed outcomes of the old split fall before it. Checked for canary, abTest and
bandit (each reallocation is an epoch); not for shadow (no live split). Variants with weight 0 are left out
(in-flight requests after a drop are not a mismatch). The expected ratio is what the router reports it
applied (`status.routing.appliedWeights`, e.g. a replica ratio) when it covers the variants, else the weights.
Only judged once every variant expects at least MIN_EXPECTED trials. A pause needs SRM_CONFIRMATIONS
consecutive checks below srmPValue on the current evidence (a subset of "ever below", so the bound holds): a
read that straddles a scrape skews one check, a real mismatch persists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlrollouts.api.durations import parse_duration
from mlrollouts.engine.tick import Tick, fmt
from mlrollouts.stats.srm import srm_log_bayes_factor

MIN_EXPECTED = 100
SETTLE_INTERVALS = 2


@dataclass(frozen=True)
class SampleRatio:
    p_value: float
    mismatch: bool
    message: str


def check_sample_ratio(tick: Tick) -> SampleRatio | None:
    if tick.spec.strategy not in ("canary", "abTest", "bandit"):
        return None
    active = [name for name in tick.spec.variant_names if tick.status.weights.get(name, 0) > 0]
    if len(active) < 2:
        return None
    window = tick.status.srm_window_samples
    if not window:
        delay = parse_duration(tick.spec.analysis.statistics.srm_feedback_delay)
        settled = tick.now - (tick.status.step_started_at or tick.now) >= max(SETTLE_INTERVALS * tick.interval, delay)
        if settled:
            tick.update(srm_window_samples=tick.sizes())
        return None
    sizes = tick.sizes()
    counts = [max(0.0, sizes.get(name, 0.0) - window.get(name, 0.0)) for name in active]
    applied = tick.status.routing.applied_weights if tick.status.routing else None
    source = applied if applied and all(applied.get(name, 0) > 0 for name in active) else tick.status.weights
    weights = [source[name] for name in active]
    total = sum(counts)
    if min(total * w / sum(weights) for w in weights) < MIN_EXPECTED:
        return None
    window_evidence = srm_log_bayes_factor(counts, weights)
    tick.update(srm_window_log_evidence=window_evidence)
    evidence = tick.status.srm_log_evidence + window_evidence
    p_value = 1.0 if evidence <= 0 else (0.0 if math.isinf(evidence) else math.exp(-evidence))
    threshold = tick.spec.analysis.statistics.srm_p_value
    observed = ", ".join(
        f"{name} {fmt(count)} ({fmt(100 * count / total)}% vs expected {weight}%)"
        for name, count, weight in zip(active, counts, weights, strict=True)
    )
    mismatch = p_value < threshold
    relation = "<" if mismatch else ">="
    message = f"sample ratio {'mismatch' if mismatch else 'ok'}: trials {observed}; always-valid p = {p_value:.3g} "
    message += f"{relation} "
    message += f"srmPValue {fmt(threshold)}"
    return SampleRatio(p_value=p_value, mismatch=mismatch, message=message)

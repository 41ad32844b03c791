"""Sample ratio mismatch: do the trials arrive in the proportions the weights ask for?

Checked on the trials since the weights last changed, so a canary step or a resumed test is judged against
the weights that were actually in force. Metrics lag routing (a scrape interval, a query's rate window), so
the trials counted just after a change still follow the old split: judged on them, every step change would
look like a mismatch, in production as much as in a compressed test. The window therefore opens only
SETTLE_INTERVALS analysis intervals after the change, with the counts of that moment as its baseline.
Not checked for bandit (weights move by
design) or shadow (no live split). Variants with weight 0 are left out (in-flight requests after a drop are
not a mismatch). The expected ratio is what the router reports it applied (`status.routing.appliedWeights`,
e.g. a replica ratio) when it covers the variants, else the weights. Only judged once every variant
expects at least MIN_EXPECTED trials, so small counts never trip it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlrollouts.engine.tick import Tick, fmt
from mlrollouts.stats import srm_pvalue

MIN_EXPECTED = 100
SETTLE_INTERVALS = 2


@dataclass(frozen=True)
class SampleRatio:
    p_value: float
    mismatch: bool
    message: str


def check_sample_ratio(tick: Tick) -> SampleRatio | None:
    if tick.spec.strategy not in ("canary", "abTest"):
        return None
    active = [name for name in tick.spec.variant_names if tick.status.weights.get(name, 0) > 0]
    if len(active) < 2:
        return None
    window = tick.status.srm_window_samples
    if not window:
        settled = tick.now - (tick.status.step_started_at or tick.now) >= SETTLE_INTERVALS * tick.interval
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
    p_value = srm_pvalue(counts, weights)
    threshold = tick.spec.analysis.statistics.srm_p_value
    observed = ", ".join(
        f"{name} {fmt(count)} ({fmt(100 * count / total)}% vs expected {weight}%)"
        for name, count, weight in zip(active, counts, weights, strict=True)
    )
    mismatch = p_value < threshold
    relation = "<" if mismatch else ">="
    message = f"sample ratio {'mismatch' if mismatch else 'ok'}: trials {observed}; p = {p_value:.3g} {relation} "
    message += f"srmPValue {fmt(threshold)}"
    return SampleRatio(p_value=p_value, mismatch=mismatch, message=message)

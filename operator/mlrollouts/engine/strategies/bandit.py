"""Bandit: Thompson-sampling allocation, re-computed every updateInterval, with a floor per arm.

Weights are P(best)-proportional (stats.thompson_allocation, computed not sampled, so deterministic).
The floor min_exploration is capped at 1 / arms so floors never exceed 100 %. An arm wins when its
P(best) >= promoteThreshold, every arm has >= minSamples trials and every guardrail is healthy. Documented
choice: when the winner is the champion the challengers lost, so the phase is RolledBack with reason
ChampionBest (winner = champion); otherwise the winner is Promoted. maxDuration: Inconclusive.
Bandits need a proportion metric (Beta posteriors); with a mean metric the weights stay equal and the
bandit can only end by maxDuration or a manual action.
"""

from __future__ import annotations

from mlrollouts.api.durations import parse_duration
from mlrollouts.engine.guardrails import GuardrailCheck
from mlrollouts.engine.running import waiting_on_guardrails
from mlrollouts.engine.tick import Tick, fmt
from mlrollouts.engine.transitions import inconclusive, promote, rollback
from mlrollouts.stats import prob_best, thompson_allocation


def _arms(tick: Tick) -> dict[str, tuple[int, int]]:
    samples = tick.status.samples
    return {
        name: (int(samples[name].successes or 0), int(samples[name].trials or 0)) if name in samples else (0, 0)
        for name in tick.spec.variant_names
    }


def step(tick: Tick, check: GuardrailCheck) -> None:
    spec, status = tick.spec, tick.status
    assert spec.bandit is not None
    bandit = spec.bandit
    if spec.analysis.primary_metric.type != "proportion":
        _expire_or_continue(tick, "bandit needs a proportion metric: weights stay equal")
        return
    arms = _arms(tick)
    best = prob_best(arms)
    leader = max(best, key=lambda name: (best[name], name == spec.champion.name))
    tick.note(probability_better=best[leader])
    min_trials = min(n for _, n in arms.values())
    healthy = waiting_on_guardrails(check) is None
    odds = ", ".join(f"{name} {best[name]:.3f}" for name in spec.variant_names)
    if best[leader] >= bandit.promote_threshold and min_trials >= bandit.min_samples and healthy:
        message = (
            f"{leader} is best with P(best) {best[leader]:.3f} >= {fmt(bandit.promote_threshold)} "
            f"(P(best): {odds}; every arm has >= {bandit.min_samples} trials)"
        )
        if leader == spec.champion.name:
            rollback(tick, "ChampionBest", f"{message}: the challengers lost", winner=leader)
        else:
            promote(tick, leader, f"{message}: promoted")
        return
    last = status.last_allocation_at or status.started_at or tick.now
    if tick.now - last >= parse_duration(bandit.update_interval):
        floor = min(bandit.min_exploration, 1.0 / len(arms))
        weights = thompson_allocation(arms, min_exploration=floor)
        tick.update(last_allocation_at=tick.now)
        if weights != {n: status.weights.get(n, 0) for n in spec.variant_names}:
            before = tick.describe_weights()
            tick.set_weights(weights)
            message = f"re-allocated by Thompson sampling (P(best): {odds}) to {tick.describe_weights()}"
            tick.record("reallocate", before, tick.describe_weights(), message)
            tick.event("Normal", "TrafficReallocated", message)
    _expire_or_continue(tick, f"P(best): {odds}; fewest trials {min_trials} (need {bandit.min_samples})")


def _expire_or_continue(tick: Tick, detail: str) -> None:
    assert tick.spec.bandit is not None
    if tick.now - (tick.status.started_at or tick.now) >= parse_duration(tick.spec.bandit.max_duration):
        inconclusive(tick, f"maxDuration {tick.spec.bandit.max_duration} reached without a best arm ({detail})")
        return
    tick.decide("continue", f"bandit running: {detail}")

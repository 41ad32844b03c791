"""Bandit: Thompson-sampling allocation every updateInterval, promotion only on always-valid evidence.

Allocation: weights proportional to each arm's P(best) (stats.thompson_allocation, computed, not sampled,
so deterministic), with a floor min_exploration per arm (capped at 1 / arms). The arms' rates are
drift-adjusted: each challenger's rate is the champion's plus its epoch-combined difference (`epochs`),
because the bandit changes the weights all the time and a base rate that drifts meanwhile would otherwise
favour whichever arm got its traffic in the good hours.

Promotion is a decision with a stated error rate, not "P(best) crossed 0.95 once" (which promoted an A/A arm
in 70 % of 1-day runs): the leader must be better than the champion in its always-valid confidence sequence
at alpha / k for k challengers (Bonferroni), have P(best) >= promoteThreshold, every arm >= minSamples trials,
healthy guardrails, minDuration (default 1d) must have passed, and the leader must also be ahead on the recent
data alone (`recheckWindow`, 6h: the data since the checkpoint before last, one to two windows of it), so a
novelty effect that faded cannot win on its early strength (the fading also empties the confidence sequence
sooner or later, which then restarts on fresh data). Documented choice: when every
challenger is worse than the champion at alpha / k the challengers lost and the phase is RolledBack with
reason ChampionBest. maxDuration without either: Inconclusive. Bandits need a proportion metric.
"""

from __future__ import annotations

from mlrollouts.api.durations import parse_duration
from mlrollouts.api.status import Comparison, RecheckWindow
from mlrollouts.engine import analysis, epochs
from mlrollouts.engine.guardrails import GuardrailCheck
from mlrollouts.engine.running import waiting_on_guardrails
from mlrollouts.engine.tick import Tick, fmt
from mlrollouts.engine.transitions import inconclusive, promote_or_wait, rollback
from mlrollouts.stats import prob_best, thompson_allocation


def _arms(tick: Tick) -> dict[str, tuple[float, float]]:
    """(successes, trials) per arm, challengers at the champion's rate plus their epoch-combined difference."""
    spec, samples = tick.spec, tick.status.samples
    champion = samples.get(spec.champion.name)
    s_c, n_c = (champion.successes or 0.0, champion.trials or 0.0) if champion else (0.0, 0.0)
    arms = {spec.champion.name: (s_c, n_c)}
    for challenger in (c.name for c in spec.challengers):
        own = samples.get(challenger)
        n = (own.trials or 0.0) if own else 0.0
        combined = epochs.combined(spec, tick.status, challenger) if n_c > 0 and n > 0 else None
        if combined is None:
            arms[challenger] = ((own.successes or 0.0) if own else 0.0, n)
            continue
        rate = min(1.0, max(0.0, s_c / n_c + combined[0]))
        arms[challenger] = (rate * n, n)
    return arms


def _regret(arms: dict[str, tuple[int, int]]) -> float:
    rates = {name: s / n for name, (s, n) in arms.items() if n > 0}
    if not rates:
        return 0.0
    best = max(rates.values())
    return sum(n * (best - rates[name]) for name, (_, n) in arms.items() if n > 0)


def _recent_lead(tick: Tick, leader: str) -> float | None:
    """The leader's rate minus the champion's on the recent data alone (None while there is too little)."""
    spec, status = tick.spec, tick.status
    window = status.recheck or RecheckWindow(started_at=tick.now, samples=dict(status.samples))
    if window.started_at is None or tick.now - window.started_at >= parse_duration(spec.bandit.recheck_window):
        window = RecheckWindow(started_at=tick.now, samples=dict(status.samples), previous=window.samples)
    tick.update(recheck=window)
    if not window.previous or leader == spec.champion.name:
        return None
    recent = {
        n: status.samples[n].minus(window.previous.get(n)) for n in (spec.champion.name, leader) if n in status.samples
    }
    champion, other = recent.get(spec.champion.name), recent.get(leader)
    if not champion or not other or not champion.trials or not other.trials:
        return None
    return (other.successes or 0.0) / other.trials - (champion.successes or 0.0) / champion.trials


def _evidence(tick: Tick) -> list[Comparison]:
    results = [analysis.sequential(tick.spec, tick.status, c.name) for c in tick.spec.challengers]
    found = [r for r in results if r is not None]
    tick.update(evidence={**tick.status.evidence, **{c.challenger: e for c, e in found}})
    return [c for c, _ in found]


def step(tick: Tick, check: GuardrailCheck) -> None:
    spec, status = tick.spec, tick.status
    assert spec.bandit is not None
    bandit = spec.bandit
    if spec.analysis.primary_metric.type != "proportion":
        _expire_or_continue(tick, "bandit needs a proportion metric: weights stay equal")
        return
    comparisons = _evidence(tick)
    arms = {name: (round(s), round(n)) for name, (s, n) in _arms(tick).items()}
    best = prob_best(arms)
    leader = max(best, key=lambda name: (best[name], name == spec.champion.name))
    tick.note(probability_better=best[leader], comparisons=comparisons, regret=_regret(arms))
    alpha = spec.analysis.statistics.alpha / len(spec.challengers)
    better = {c.challenger for c in comparisons if c.verdict == "better" and (c.p_value or 1.0) < alpha}
    worse = {c.challenger for c in comparisons if c.verdict == "worse" and (c.p_value or 1.0) < alpha}
    min_trials = min(n for _, n in arms.values())
    waited = tick.now - (status.started_at or tick.now) >= parse_duration(bandit.min_duration)
    ready = waited and min_trials >= bandit.min_samples and waiting_on_guardrails(check) is None
    odds = ", ".join(f"{name} {best[name]:.3f}" for name in spec.variant_names)
    evidence = f"P(best): {odds}; always-valid p at alpha/{len(spec.challengers)} = {fmt(alpha)}"
    recent = _recent_lead(tick, leader)
    winner = ready and leader in better and best[leader] >= bandit.promote_threshold
    if winner and (recent is None or recent <= 0):
        lead = "no recent data yet" if recent is None else f"{fmt(recent)} on the recent data"
        evidence += f"; {leader} not ahead on the data since the recheck before last ({lead})"
    elif winner:
        p = next(c.p_value for c in comparisons if c.challenger == leader)
        message = f"{leader} is better than {spec.champion.name} (always-valid p = {p:.3g} < {fmt(alpha)}; {evidence})"
        promote_or_wait(tick, leader, message, f"{message}: promoted")
        return
    if ready and len(worse) == len(spec.challengers):
        rollback(tick, "ChampionBest", f"every challenger is worse than the champion ({evidence})", winner=leader)
        return
    _reallocate(tick, arms, best, odds)
    waits = [] if waited else [f"minDuration {bandit.min_duration} not reached"]
    if min_trials < bandit.min_samples:
        waits.append(f"fewest trials {fmt(min_trials)} of {bandit.min_samples}")
    _expire_or_continue(tick, "; ".join([evidence, *waits]))


def _reallocate(tick: Tick, arms: dict[str, tuple[int, int]], best: dict[str, float], odds: str) -> None:
    spec, status = tick.spec, tick.status
    assert spec.bandit is not None
    last = status.last_allocation_at or status.started_at or tick.now
    if tick.now - last < parse_duration(spec.bandit.update_interval):
        return
    floor = min(spec.bandit.min_exploration, 1.0 / len(arms))
    weights = thompson_allocation({name: (round(s), round(n)) for name, (s, n) in arms.items()}, min_exploration=floor)
    tick.update(last_allocation_at=tick.now)
    if weights != {n: status.weights.get(n, 0) for n in spec.variant_names}:
        before = tick.describe_weights()
        tick.set_weights(weights)
        message = f"re-allocated by Thompson sampling (P(best): {odds}) to {tick.describe_weights()}"
        tick.record("reallocate", before, tick.describe_weights(), message)
        tick.event("Normal", "TrafficReallocated", message)


def _expire_or_continue(tick: Tick, detail: str) -> None:
    assert tick.spec.bandit is not None
    if tick.now - (tick.status.started_at or tick.now) >= parse_duration(tick.spec.bandit.max_duration):
        inconclusive(tick, f"maxDuration {tick.spec.bandit.max_duration} reached without a best arm ({detail})")
        return
    tick.decide("continue", f"bandit running: {detail}")

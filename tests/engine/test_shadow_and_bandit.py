"""Shadow verdicts and bandit allocation/promotion, one tick at a time."""

from __future__ import annotations

from datetime import timedelta

from factories import CHALLENGER, CHAMPION, SECOND, T0, latency, make_spec, observe, started

from mlrollouts.engine import decide
from mlrollouts.stats import prob_best, thompson_allocation

HEALTHY = {CHAMPION: {"p95-latency": 0.2}, CHALLENGER: {"p95-latency": 0.3}}


def test_shadow_passes_after_duration_into_paused_without_live_traffic_or_mirror():
    spec = make_spec("shadow", guardrails=[latency()], block={"duration": "1h"})
    status = started(spec)
    before = decide(spec, status, observe(T0 + timedelta(minutes=59), {}, HEALTHY), T0 + timedelta(minutes=59))
    assert before.status.phase == "Shadowing" and "1m of 1h left" in before.status.analysis.reason
    now = T0 + timedelta(hours=1)
    done = decide(spec, before.status, observe(now, {}, HEALTHY), now)
    assert (done.status.phase, done.status.reason) == ("Paused", "ShadowPassed")
    assert done.status.weights == {CHAMPION: 100, CHALLENGER: 0} and done.status.mirror_percent is None
    assert done.actions[0].mirror is None and done.actions[0].split.weights[CHALLENGER] == 0
    assert "ready for a canary" in done.status.message


def test_shadow_guardrail_failures_roll_back_and_remove_the_mirror():
    spec = make_spec("shadow", guardrails=[latency(max_=0.5, failure_limit=2)])
    slow = {CHAMPION: {"p95-latency": 0.2}, CHALLENGER: {"p95-latency": 0.8}}
    status = decide(spec, started(spec), observe(T0, {}, slow), T0).status
    decision = decide(spec, status, observe(T0, {}, slow), T0)
    assert decision.status.phase == "RolledBack" and decision.status.mirror_percent is None
    assert decision.actions[0].mirror is None


def test_shadow_never_sends_live_traffic_even_when_samples_exist():
    spec = make_spec("shadow", guardrails=[latency()])
    status = started(spec)
    for minute in range(0, 70, 10):
        now = T0 + timedelta(minutes=minute)
        status = decide(spec, status, observe(now, {CHAMPION: (5, 10), CHALLENGER: (9, 10)}, HEALTHY), now).status
        assert status.weights[CHALLENGER] == 0


def _arms_counts(rates, trials):
    return {name: (round(rate * trials), trials) for name, rate in rates.items()}


def test_bandit_reallocates_by_thompson_every_update_interval_only():
    spec = make_spec("bandit", challengers=2, block={"updateInterval": "5m", "minExploration": 0.1})
    counts = _arms_counts({CHAMPION: 0.10, CHALLENGER: 0.12, SECOND: 0.09}, 300)
    early = decide(spec, started(spec), observe(T0 + timedelta(minutes=4), counts), T0 + timedelta(minutes=4))
    assert early.actions == () and early.status.weights == {CHAMPION: 34, CHALLENGER: 33, SECOND: 33}
    now = T0 + timedelta(minutes=5)
    due = decide(spec, early.status, observe(now, counts), now)
    expected = thompson_allocation({n: (int(s), int(t)) for n, (s, t) in counts.items()}, min_exploration=0.1)
    assert due.status.weights == expected and due.status.last_allocation_at == now
    assert due.actions[0].split.weights == expected
    assert "TrafficReallocated" in [e.reason for e in due.events]


DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def test_bandit_promotes_the_best_arm_on_evidence_after_min_duration():
    spec = make_spec("bandit", block={"minSamples": 500, "promoteThreshold": 0.95})
    counts = _arms_counts({CHAMPION: 0.10, CHALLENGER: 0.15}, 20000)
    half = T0 + timedelta(minutes=30)
    early = decide(spec, started(spec), observe(half, counts), half).status
    assert early.phase == "Progressing" and "minDuration 1h not reached" in early.analysis.reason
    later = T0 + timedelta(hours=12)  # past minDuration and one recheck window: recent data exists
    doubled = {name: (2 * s, 2 * n) for name, (s, n) in counts.items()}
    status = decide(spec, early, observe(later, doubled), later).status
    assert (status.phase, status.winner) == ("Promoted", CHALLENGER)
    assert (
        status.analysis.probability_better
        == prob_best({CHAMPION: (4000, 40000), CHALLENGER: (6000, 40000)})[CHALLENGER]
    )
    assert "always-valid p = " in status.message


def test_bandit_does_not_promote_an_arm_that_is_no_longer_ahead():
    """Strong early evidence, then the recent window shows the challenger behind: no promotion (novelty)."""
    spec = make_spec("bandit", block={"minSamples": 500})
    early = decide(
        spec, started(spec), observe(T0 + HOUR, _arms_counts({CHAMPION: 0.10, CHALLENGER: 0.15}, 20000)), T0 + HOUR
    )
    later = T0 + 8 * HOUR
    faded = {CHAMPION: (2000 + 400, 24000), CHALLENGER: (3000 + 380, 24000)}
    status = decide(spec, early.status, observe(later, faded), later).status
    assert status.phase == "Progressing"
    assert "not ahead on the data since the recheck before last (-0.005" in status.analysis.reason


def test_bandit_does_not_promote_on_p_best_alone():
    """P(best) 0.99 from 2,000 trials each is not evidence enough at the always-valid alpha."""
    spec = make_spec("bandit", block={"minSamples": 500})
    counts = _arms_counts({CHAMPION: 0.100, CHALLENGER: 0.121}, 2000)
    assert prob_best({n: (int(s), int(t)) for n, (s, t) in counts.items()})[CHALLENGER] > 0.95
    status = decide(spec, started(spec), observe(T0 + DAY, counts), T0 + DAY).status
    assert status.phase == "Progressing"


def test_bandit_waits_for_min_samples_even_when_one_arm_is_clearly_best():
    spec = make_spec("bandit", block={"minSamples": 5000})
    counts = _arms_counts({CHAMPION: 0.10, CHALLENGER: 0.15}, 2000)
    status = decide(spec, started(spec), observe(T0 + DAY, counts), T0 + DAY).status
    assert status.phase == "Progressing" and "fewest trials 2000 of 5000" in status.analysis.reason


def test_bandit_champion_best_is_a_rollback_with_the_champion_as_winner():
    spec = make_spec("bandit", block={"minSamples": 500})
    counts = _arms_counts({CHAMPION: 0.15, CHALLENGER: 0.10}, 20000)
    status = decide(spec, started(spec), observe(T0 + DAY, counts), T0 + DAY).status
    assert (status.phase, status.reason, status.winner) == ("RolledBack", "ChampionBest", CHAMPION)
    assert status.weights == {CHAMPION: 100, CHALLENGER: 0}


def test_bandit_max_duration_is_inconclusive():
    spec = make_spec("bandit", block={"maxDuration": "1d"})
    counts = _arms_counts({CHAMPION: 0.10, CHALLENGER: 0.10}, 100)
    now = T0 + timedelta(days=1)
    status = decide(spec, started(spec), observe(now, counts), now).status
    assert status.phase == "Inconclusive" and status.weights == {CHAMPION: 100, CHALLENGER: 0}

"""A/B/n per statistics method: plan, early stop, fixed horizon, Bayesian thresholds, drops, time limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import CHALLENGER, CHAMPION, SECOND, T0, make_spec, observe, started

from mlrollouts.engine import decide
from mlrollouts.stats import sample_size_proportions
from mlrollouts.stats.differences import proportion_difference
from mlrollouts.stats.spike_slab import spike_slab

HOUR = timedelta(hours=1)


def test_plan_uses_spec_baseline_bonferroni_alpha_and_observed_rate_for_eta():
    spec = make_spec(
        "abTest",
        challengers=2,
        metric={"baseline": 0.1, "minimumDetectableEffect": 0.1},
        statistics={"method": "fixedHorizon"},
    )
    now = T0 + 2 * HOUR
    counts = {CHAMPION: (100, 1000), CHALLENGER: (100, 1000), SECOND: (100, 1000)}
    plan = decide(spec, started(spec), observe(now, counts), now).status.plan
    assert plan.required_per_variant == sample_size_proportions(0.1, 0.1, alpha=0.025, power=0.8)
    assert plan.observed_per_hour == 500
    assert plan.estimated_completion == now + timedelta(hours=(plan.required_per_variant - 1000) / 500)


def test_plan_for_one_challenger_matches_r_power_prop_test():
    # R: power.prop.test(p1 = 0.1, p2 = 0.11, power = 0.8) -> n = 14750.79
    spec = make_spec(
        "abTest", metric={"baseline": 0.1, "minimumDetectableEffect": 0.1}, statistics={"method": "fixedHorizon"}
    )
    status = decide(spec, started(spec), observe(T0 + HOUR, {CHAMPION: (1, 10), CHALLENGER: (1, 10)}), T0 + HOUR)
    assert status.status.plan.required_per_variant == 14751


def test_a_sequential_plan_pays_for_looking_at_any_time():
    """The always-valid test needs more samples for the same power: 27,380 vs 14,751 at 10 % +10 %."""
    spec = make_spec("abTest", metric={"baseline": 0.1, "minimumDetectableEffect": 0.1})
    status = decide(spec, started(spec), observe(T0 + HOUR, {CHAMPION: (1, 10), CHALLENGER: (1, 10)}), T0 + HOUR)
    assert status.status.plan.required_per_variant == 27380


def test_plan_from_observed_champion_rate_is_frozen():
    spec = make_spec("abTest", statistics={"method": "fixedHorizon"})
    first = decide(spec, started(spec), observe(T0 + HOUR, {CHAMPION: (200, 1000), CHALLENGER: (200, 1000)}), T0)
    assert first.status.plan.baseline == 0.2
    later = decide(spec, first.status, observe(T0 + HOUR, {CHAMPION: (900, 3000), CHALLENGER: (900, 3000)}), T0)
    assert later.status.plan.required_per_variant == first.status.plan.required_per_variant


def test_sequential_stops_early_for_a_winner():
    spec = make_spec("abTest")
    counts = {CHAMPION: (1000, 10000), CHALLENGER: (1300, 10000)}
    status = decide(spec, started(spec), observe(T0 + HOUR, counts), T0 + HOUR).status
    assert (status.phase, status.winner) == ("Promoted", CHALLENGER)
    assert status.weights == {CHAMPION: 0, CHALLENGER: 100}
    assert status.analysis.comparisons[0].verdict == "better"
    assert "churn-v3 is better than churn-v2 on retention (lift 30%" in status.message


def test_min_duration_delays_promotion_but_not_harm():
    spec = make_spec("abTest", block={"minDuration": "7d"})
    better = {CHAMPION: (1000, 10000), CHALLENGER: (1300, 10000)}
    waiting = decide(spec, started(spec), observe(T0 + HOUR, better), T0 + HOUR).status
    assert waiting.phase == "Progressing"
    assert "minDuration 7d has not passed" in waiting.analysis.reason
    worse = {CHAMPION: (1300, 10000), CHALLENGER: (1000, 10000)}
    assert decide(spec, started(spec), observe(T0 + HOUR, worse), T0 + HOUR).status.phase == "RolledBack"


def test_abn_drops_a_harmful_challenger_and_keeps_testing_the_others():
    spec = make_spec("abTest", challengers=2)
    counts = {CHAMPION: (1000, 10000), CHALLENGER: (1010, 10000), SECOND: (700, 10000)}
    decision = decide(spec, started(spec), observe(T0 + HOUR, counts), T0 + HOUR)
    status = decision.status
    assert status.phase == "Progressing"
    assert status.weights == {CHAMPION: 67, CHALLENGER: 33, SECOND: 0}
    assert decision.actions[0].split.weights == {CHAMPION: 67, CHALLENGER: 33, SECOND: 0}
    assert status.history[-1].action == "drop"
    assert "ChallengerDropped" in [e.reason for e in decision.events]
    comparisons = {c.challenger: c for c in status.analysis.comparisons}
    assert comparisons[SECOND].adjusted_p_value >= comparisons[SECOND].p_value


def test_holm_adjustment_can_withhold_a_verdict():
    spec = make_spec("abTest", challengers=2, statistics={"method": "fixedHorizon"}, metric={"baseline": 0.1})
    n = sample_size_proportions(0.1, 0.05, alpha=0.025, power=0.8)
    champion_n = round(n * 34 / 33)  # the 34/33/33 split, exactly as routed
    base = round(0.1 * champion_n)
    # challenger: raw p ~ 0.03 < alpha 0.05, but Holm multiplies the smallest of two p-values by 2
    counts = {CHAMPION: (base, champion_n), CHALLENGER: (round(0.1033 * n), n), SECOND: (round(0.1 * n), n)}
    status = decide(spec, started(spec), observe(T0 + HOUR, counts), T0 + HOUR).status
    comparison = {c.challenger: c for c in status.analysis.comparisons}[CHALLENGER]
    assert comparison.p_value < 0.05 <= comparison.adjusted_p_value
    assert comparison.verdict == "undecided"
    assert status.phase == "Inconclusive"  # the planned horizon was reached without a significant winner


def test_fixed_horizon_does_not_look_before_the_planned_sample_size():
    spec = make_spec("abTest", statistics={"method": "fixedHorizon"}, metric={"baseline": 0.1})
    counts = {CHAMPION: (1000, 10000), CHALLENGER: (1500, 10000)}  # obvious, but n < plan
    status = decide(spec, started(spec), observe(T0 + HOUR, counts), T0 + HOUR).status
    assert status.plan.required_per_variant > 10000
    assert status.phase == "Progressing" and status.analysis.decision == "continue"


@pytest.mark.parametrize(
    ("counts", "phase"),
    [
        ({CHAMPION: (1000, 10000), CHALLENGER: (1150, 10000)}, "Promoted"),
        ({CHAMPION: (1150, 10000), CHALLENGER: (1000, 10000)}, "RolledBack"),
        ({CHAMPION: (1000, 10000), CHALLENGER: (1010, 10000)}, "Progressing"),
    ],
)
def test_bayesian_thresholds(counts, phase):
    spec = make_spec(
        "abTest",
        statistics={"method": "bayesian", "probabilityThreshold": 0.95, "lossThreshold": 0.001},
        metric={"baseline": 0.1, "minimumDetectableEffect": 0.1},
    )
    status = decide(spec, started(spec), observe(T0 + HOUR, counts), T0 + HOUR).status
    assert status.phase == phase
    (s_a, n_a), (s_b, n_b) = counts[CHAMPION], counts[CHALLENGER]
    estimate, variance = proportion_difference(s_a, n_a, s_b, n_b)
    expected = spike_slab(estimate, variance, 0.01, prior_differs=0.5).probability_positive
    assert status.analysis.comparisons[0].probability_better == pytest.approx(expected, rel=1e-9)


def test_bayesian_direction_decrease_flips_better():
    spec = make_spec("abTest", statistics={"method": "bayesian"}, metric={"direction": "decrease"})
    counts = {CHAMPION: (1150, 10000), CHALLENGER: (1000, 10000)}
    status = decide(spec, started(spec), observe(T0 + HOUR, counts), T0 + HOUR).status
    assert (status.phase, status.winner) == ("Promoted", CHALLENGER)


def test_max_duration_without_decision_is_inconclusive_with_champion_traffic():
    spec = make_spec("abTest", block={"maxDuration": "2d"})
    counts = {CHAMPION: (1000, 10000), CHALLENGER: (1000, 10000)}
    now = T0 + timedelta(days=2)
    decision = decide(spec, started(spec), observe(now, counts), now)
    assert (decision.status.phase, decision.status.reason) == ("Inconclusive", "Inconclusive")
    assert decision.status.weights == {CHAMPION: 100, CHALLENGER: 0}
    assert decision.status.analysis.decision == "conclude"
    assert "maxDuration 2d reached without a decision" in decision.status.message

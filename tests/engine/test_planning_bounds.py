"""The sample-size plan stays a plan at the API's extremes: no date is better than an overflow."""

from __future__ import annotations

from datetime import timedelta

from factories import CHALLENGER, CHAMPION, T0, make_spec, observe, started

from mlrollouts.engine import decide


def test_a_plan_centuries_away_has_no_date_instead_of_overflowing():
    """A tiny minimumDetectableEffect and a trickle of traffic: millions of years to go, not an OverflowError."""
    spec = make_spec("abTest", metric={"baseline": 0.1, "minimumDetectableEffect": 0.0001})
    now = T0 + timedelta(days=300)
    plan = decide(spec, started(spec), observe(now, {CHAMPION: (1, 2), CHALLENGER: (1, 2)}), now).status.plan
    assert plan.required_per_variant > 1e9 and plan.observed_per_hour < 0.001
    assert plan.estimated_completion is None

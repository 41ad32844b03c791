"""Counters -> exact samples: baselines, counter resets, rounding of extrapolated window counts."""

from __future__ import annotations

import pytest
from factories import CHALLENGER, CHAMPION, T0, make_spec, observe, started

from mlrollouts.api import CounterState
from mlrollouts.engine import Observations, VariantObservation, decide
from mlrollouts.engine.samples import advance_counter, since_start


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ([100, 150, 180], [0, 50, 80]),
        ([100, 150, 20, 50], [0, 50, 70, 100]),  # reset after 150: the 20 new ones count on top
        ([100, 150, 0, 0, 30, 5], [0, 50, 50, 50, 80, 85]),  # two resets
        ([0, 0, 7], [0, 0, 7]),
    ],
)
def test_cumulative_counter_survives_resets(readings, expected):
    state, seen = None, []
    for value in readings:
        state = advance_counter(state, value)
        seen.append(since_start(state))
    assert seen == expected


def test_counter_state_is_kept_in_status_per_variant_and_query():
    spec = make_spec("canary")
    status = started(spec)
    for counts in ({CHAMPION: (10, 100), CHALLENGER: (1, 10)}, {CHAMPION: (30, 300), CHALLENGER: (3, 5)}):
        status = decide(spec, status, observe(T0, counts, cumulative=True), T0).status
    assert status.counters[CHALLENGER]["trials"] == CounterState(baseline=10, last=5, offset=10)
    assert status.samples[CHAMPION].trials == 200 and status.samples[CHAMPION].successes == 20
    assert status.samples[CHALLENGER].trials == 5 and status.samples[CHALLENGER].successes == 2


def test_window_values_are_rounded_counts_and_successes_never_exceed_trials():
    spec = make_spec("canary")
    counts = {CHAMPION: (40.4, 99.6), CHALLENGER: (12.7, 12.2)}
    status = decide(spec, started(spec), observe(T0, counts), T0).status
    assert (status.samples[CHAMPION].successes, status.samples[CHAMPION].trials) == (40, 100)
    assert (status.samples[CHALLENGER].successes, status.samples[CHALLENGER].trials) == (12, 12)


def test_mean_metric_keeps_sums_as_floats():
    spec = make_spec("abTest", metric={"type": "mean"})
    obs = Observations(
        time=T0,
        variants={
            name: VariantObservation(samples={"count": 10.4, "sum": 12.34, "sumOfSquares": 20.5})
            for name in (CHAMPION, CHALLENGER)
        },
    )
    samples = decide(spec, started(spec), obs, T0).status.samples[CHAMPION]
    assert (samples.count, samples.sum, samples.sum_of_squares) == (10, 12.34, 20.5)

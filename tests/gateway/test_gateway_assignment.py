"""Assignment: uniform buckets, stable across processes, monotone when a challenger ramps up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mlrollouts.gateway.assignment import BUCKETS, Assignment, bucket_of, layout


def test_buckets_are_uniform_over_100k_users() -> None:
    counts = Counter(bucket_of("churn-exp", f"user-{index}") for index in range(100_000))
    observed = [counts.get(bucket, 0) for bucket in range(BUCKETS)]
    assert stats.chisquare(observed).pvalue > 0.001


def test_a_90_10_split_assigns_10_percent_of_users_to_the_challenger() -> None:
    assignment = Assignment.build("churn-exp", "v2", ["v3"], {"v2": 90, "v3": 10})
    on_challenger = sum(assignment.variant_for_user(f"u{index}") == "v3" for index in range(100_000))
    assert stats.binomtest(on_challenger, 100_000, 0.10).pvalue > 0.001


def test_experiments_assign_independently() -> None:
    users = [f"u{index}" for index in range(20_000)]
    first = [bucket_of("exp-a", user) < 5000 for user in users]
    second = [bucket_of("exp-b", user) < 5000 for user in users]
    table = [
        [
            sum(a and b for a, b in zip(first, second, strict=True)),
            sum(a and not b for a, b in zip(first, second, strict=True)),
        ],
        [
            sum(b and not a for a, b in zip(first, second, strict=True)),
            sum(not a and not b for a, b in zip(first, second, strict=True)),
        ],
    ]
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_assignment_is_the_same_in_a_new_process_with_another_hash_seed() -> None:
    users = [f"user-{index}" for index in range(500)]
    here = [Assignment.build("churn-exp", "v2", ["v3"], {"v2": 80, "v3": 20}).variant_for_user(u) for u in users]
    program = (
        "import json, sys\n"
        "from mlrollouts.gateway.assignment import Assignment\n"
        "a = Assignment.build('churn-exp', 'v2', ['v3'], {'v2': 80, 'v3': 20})\n"
        "print(json.dumps([a.variant_for_user(u) for u in json.loads(sys.stdin.read())]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        input=json.dumps(users),
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"PYTHONHASHSEED": "12345"},
        timeout=60,
    )
    assert json.loads(result.stdout) == here
    assert "v3" in here and "v2" in here


def test_ramping_the_challenger_keeps_everyone_already_on_it() -> None:
    users = [f"u{index}" for index in range(20_000)]
    previous: set[str] = set()
    for weight in (5, 10, 25, 50, 100):
        assignment = Assignment.build("churn-exp", "v2", ["v3"], {"v2": 100 - weight, "v3": weight})
        on_challenger = {user for user in users if assignment.variant_for_user(user) == "v3"}
        assert previous <= on_challenger, f"users left the challenger when it grew to {weight} %"
        previous = on_challenger
    assert len(previous) == len(users)


def test_layout_gives_each_variant_exactly_its_share() -> None:
    owners = Counter(layout("c", ["a", "b", "d"], {"c": 52.5, "a": 20, "b": 17.5, "d": 10}))
    assert owners == {"c": 5250, "a": 2000, "b": 1750, "d": 1000}


weights_within_regions = st.lists(st.integers(0, 33), min_size=3, max_size=3)


@settings(max_examples=60, deadline=None)
@given(before=weights_within_regions, which=st.integers(0, 2), growth=st.integers(0, 33))
def test_abn_growth_of_one_challenger_moves_nobody_else(before: list[int], which: int, growth: int) -> None:
    """A/B/n: a challenger growing within its region never takes users from, or gives users to, the others."""
    names = ["a", "b", "d"]
    after = list(before)
    after[which] = min(33, before[which] + growth)

    def owners(weights: list[int]) -> tuple[str, ...]:
        return layout("c", names, dict(zip(names, weights, strict=True)) | {"c": 100 - sum(weights)})

    old, new = owners(before), owners(after)
    for bucket in range(BUCKETS):
        if old[bucket] in names:
            assert new[bucket] == old[bucket]
        if new[bucket] != old[bucket]:
            assert new[bucket] == names[which]


@settings(max_examples=40, deadline=None)
@given(other=st.integers(0, 20), start=st.integers(0, 78), growth=st.integers(0, 78))
def test_a_challenger_beyond_its_region_still_keeps_its_users(other: int, start: int, growth: int) -> None:
    """Two challengers, one ramped past its half of the buckets (a bandit's favourite): still monotone."""
    grown = min(start + growth, 100 - other)
    before = layout("c", ["a", "b"], {"a": start, "b": other, "c": 100 - start - other})
    after = layout("c", ["a", "b"], {"a": grown, "b": other, "c": 100 - grown - other})
    assert Counter(after)["a"] == grown * 100
    assert all(new == "a" for old, new in zip(before, after, strict=True) if old == "a")
    assert all(new == "b" for old, new in zip(before, after, strict=True) if old == "b")

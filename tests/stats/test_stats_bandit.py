"""Thompson allocation: P(best) checked against sampling, floors respected, and regret below a 50/50 split."""

from __future__ import annotations

import numpy as np
import pytest

from mlrollouts.stats import largest_remainder, prob_b_beats_a, prob_best, thompson_allocation


def test_two_arms_are_exact() -> None:
    probabilities = prob_best({"champion": (100, 1000), "challenger": (120, 1000)})
    assert probabilities["challenger"] == prob_b_beats_a(100, 1000, 120, 1000)
    assert probabilities["champion"] + probabilities["challenger"] == pytest.approx(1.0, abs=1e-15)


def test_three_arms_match_a_large_monte_carlo() -> None:
    arms = {"a": (100, 1000), "b": (120, 1000), "c": (112, 950)}
    rng = np.random.default_rng(0)
    draws = np.column_stack([rng.beta(s + 1, n - s + 1, 2_000_000) for s, n in arms.values()])
    sampled = np.bincount(draws.argmax(axis=1), minlength=3) / len(draws)
    computed = prob_best(arms)
    assert sum(computed.values()) == pytest.approx(1.0, abs=1e-9)
    assert list(computed.values()) == pytest.approx(list(sampled), abs=2e-3)


def test_allocation_follows_the_evidence_with_floors() -> None:
    split = thompson_allocation({"a": (700, 1000), "b": (800, 1000), "c": (690, 1000)}, min_exploration=0.05)
    assert sum(split.values()) == 100
    assert split == {"a": 5, "b": 90, "c": 5}
    even = thompson_allocation({"a": (0, 0), "b": (0, 0), "c": (0, 0)}, min_exploration=0.1)
    assert sorted(even.values()) == [33, 33, 34]


def test_impossible_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="min_exploration"):
        thompson_allocation({"a": (1, 2), "b": (1, 2), "c": (1, 2)}, min_exploration=0.4)


def test_largest_remainder_keeps_the_total() -> None:
    assert largest_remainder({"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    assert largest_remainder({"a": 0.125, "b": 0.875}, total=10) == {"a": 1, "b": 9}


def test_bandit_regret_is_well_below_a_fixed_split() -> None:
    rates = {"champion": 0.72, "challenger": 0.78}
    rng = np.random.default_rng(42)
    replicates, batches, batch_size = 20, 40, 200
    regrets = []
    for _ in range(replicates):
        counts = {name: (0, 0) for name in rates}
        regret = 0.0
        for _ in range(batches):
            split = thompson_allocation(counts, min_exploration=0.05)
            for name, percent in split.items():
                trials = round(batch_size * percent / 100)
                successes = int(rng.binomial(trials, rates[name]))
                counts[name] = (counts[name][0] + successes, counts[name][1] + trials)
                regret += trials * (max(rates.values()) - rates[name])
        regrets.append(regret)
    fixed_split_regret = batches * batch_size * 0.5 * (0.78 - 0.72)
    assert np.mean(regrets) < 0.4 * fixed_split_regret

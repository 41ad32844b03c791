"""examples/canary-istio.yaml through the real engine with seeded traffic: the acceptance figures of the
ratio guardrails (docs/statistics.md#guardrails shows the larger runs these are samples of)."""

from __future__ import annotations

import pytest
from guardrail_sim import Health, example_spec, run

CHAMPION, CHALLENGER = "fraud-v7", "fraud-v8"
SPEC = example_spec("canary-istio.yaml")


@pytest.mark.parametrize(("rps", "runs"), [(10, 15), (50, 30), (200, 30)])
def test_a_healthy_challenger_is_promoted_not_rolled_back(rps: int, runs: int) -> None:
    """0.2 % errors vs the 1 % bound, the champion's latency: the old threshold form rolled back 41-51 %."""
    outcomes = [run(SPEC, {CHAMPION: Health(), CHALLENGER: Health()}, rps, seed) for seed in range(runs)]
    assert [o.status.message for o in outcomes if o.phase == "RolledBack"] == []
    assert sum(o.phase == "Promoted" for o in outcomes) >= 0.9 * runs


@pytest.mark.parametrize("rps", [10, 50, 200])
def test_a_p99_twice_the_champions_is_caught_within_the_first_step(rps: int) -> None:
    """Same median, p99 0.5 s -> 1 s: 7.2 % of requests slower than 0.5 s instead of 1 %."""
    runs = 30
    outcomes = [run(SPEC, {CHAMPION: Health(), CHALLENGER: Health(slow=0.072)}, rps, seed) for seed in range(runs)]
    caught = [o for o in outcomes if o.reason == "GuardrailFailed" and o.max_weight == 1]
    assert len(caught) >= 0.9 * runs
    assert all("slow-requests of fraud-v8" in o.status.message for o in caught)


def test_a_threefold_error_rate_is_caught_within_the_first_step_at_200_requests_per_second() -> None:
    """0.6 % errors vs the champion's 0.2 % (maxRatio 1.5): below the 1 % max, so only the relative bound sees it."""
    runs = 30
    outcomes = [run(SPEC, {CHAMPION: Health(), CHALLENGER: Health(error=0.006)}, 200, seed) for seed in range(runs)]
    assert all(o.reason == "GuardrailFailed" for o in outcomes)
    caught = [o for o in outcomes if o.max_weight == 1]
    assert len(caught) >= 0.9 * runs
    assert all("error-rate of fraud-v8" in o.status.message and "maxRatio 1.5" in o.status.message for o in caught)


def test_a_threefold_error_rate_is_held_at_the_first_step_until_established_at_10_requests_per_second() -> None:
    """Too little traffic to establish 0.6 % vs 0.3 % allowed within 15 minutes: the step holds instead of
    advancing (clearance, power 0.95), whatever its estimate does, and nothing is promoted."""
    runs = 12
    outcomes = [
        run(SPEC, {CHAMPION: Health(), CHALLENGER: Health(error=0.006)}, 10, seed, max_ticks=480)
        for seed in range(runs)
    ]
    assert not [o for o in outcomes if o.phase == "Promoted"]
    held = [o for o in outcomes if o.max_weight == 1]
    assert len(held) >= 0.9 * runs
    waiting = [o.status.analysis.reason for o in held if o.phase != "RolledBack" and o.status.analysis]
    assert all("error-rate" in m and ("not yet ruled out" in m or "possibly breached" in m) for m in waiting), waiting

"""Properties over random specs and observation streams (hypothesis), checked after every tick."""

from __future__ import annotations

import re
from datetime import timedelta

from factories import CHAMPION, T0, latency, make_spec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlrollouts.api import ModelExperimentStatus
from mlrollouts.api.durations import parse_duration
from mlrollouts.api.status import HISTORY_LIMIT
from mlrollouts.engine import Observations, VariantObservation, decide

CONDITION_TYPES = {"Ready", "Progressing", "GuardrailsHealthy", "MetricsAvailable", "SampleRatioHealthy", "Completed"}


@st.composite
def specs(draw):
    strategy = draw(st.sampled_from(["canary", "abTest", "shadow", "bandit"]))
    challengers = 1 if strategy in ("canary", "shadow") else draw(st.integers(1, 2))
    block = {}
    if strategy == "canary":
        steps = sorted(draw(st.sets(st.integers(1, 99), min_size=0, max_size=3)))
        block = {"steps": [*steps, 100], "stepDuration": "5m", "minSamplesPerStep": draw(st.integers(1, 200))}
    elif strategy == "abTest":
        block = {"maxDuration": "3h"}
    elif strategy == "shadow":
        block = {"duration": "30m"}
    else:
        block = {"minSamples": draw(st.integers(1, 500)), "updateInterval": "5m", "maxDuration": "3h"}
    guardrails = [latency(max_=0.5, failure_limit=draw(st.integers(1, 3)))] if draw(st.booleans()) else []
    return make_spec(
        strategy,
        challengers=challengers,
        block=block,
        guardrails=guardrails,
        statistics={"method": draw(st.sampled_from(["sequential", "fixedHorizon", "bayesian"]))},
        autoPromote=draw(st.booleans()),
        onMetricsUnavailable=draw(st.sampled_from(["hold", "rollback"])),
        metricsFailureLimit=draw(st.integers(1, 3)),
    )


tick_inputs = st.fixed_dictionaries(
    {
        "minutes": st.integers(1, 20),
        "traffic": st.integers(0, 3000),
        "rates": st.tuples(st.floats(0.05, 0.5), st.floats(0.05, 0.5), st.floats(0.05, 0.5)),
        "latency": st.floats(0.1, 0.8),
        "available": st.sampled_from([True, True, True, False]),
        "reset": st.sampled_from([False, False, False, True]),
        "manual": st.sampled_from([None] * 12 + ["promote", "rollback", "pause", "resume"]),
        "generation": st.sampled_from([1] * 10 + [2]),
    }
)


class Stream:
    """Raw cumulative counters that follow the routed weights, with optional counter resets."""

    def __init__(self, spec):
        self.spec = spec
        self.raw = {name: [0.0, 0.0] for name in spec.variant_names}
        self.now = T0

    def observe(self, status: ModelExperimentStatus, tick: dict) -> Observations:
        self.now += timedelta(minutes=tick["minutes"])
        for index, name in enumerate(self.spec.variant_names):
            share = status.weights.get(name, 0) / 100
            if status.mirror_percent and name != CHAMPION:
                share = status.mirror_percent / 100
            trials = round(tick["traffic"] * share)
            if tick["reset"] and index == 0:
                self.raw[name] = [0.0, 0.0]
            self.raw[name][0] += round(trials * tick["rates"][index % 3])
            self.raw[name][1] += trials
        variants = {
            name: VariantObservation(
                samples={"successes": s, "trials": n} if tick["available"] else {"successes": None, "trials": None},
                guardrails={"p95-latency": tick["latency"] if name != CHAMPION else 0.2},
            )
            for name, (s, n) in self.raw.items()
        }
        errors = () if tick["available"] else ("prometheus: timeout",)
        return Observations(time=self.now, variants=variants, errors=errors, cumulative_counters=True)


def _check_weights(spec, status):
    if status.phase == "Pending":  # waiting for a first complete read: no traffic has moved
        assert status.weights == {} and status.reason == "MetricsUnavailable"
        return
    assert set(status.weights) == set(spec.variant_names)
    assert all(isinstance(w, int) and w >= 0 for w in status.weights.values())
    assert sum(status.weights.values()) == 100


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), ticks=st.lists(tick_inputs, min_size=1, max_size=12))
def test_invariants_hold_on_every_tick(spec, ticks):
    stream = Stream(spec)
    status = decide(spec, ModelExperimentStatus(), stream.observe(ModelExperimentStatus(), ticks[0]), T0, generation=1)
    status = status.status
    rolled_back = False
    for tick in ticks:
        observations = stream.observe(status, tick)
        kwargs = {"generation": tick["generation"], "manual": tick["manual"]}
        decision = decide(spec, status, observations, stream.now, **kwargs)
        again = decide(spec, status, observations, stream.now, **kwargs)
        assert again == decision  # idempotent: same input, same output
        new = decision.status
        _check_weights(spec, new)
        assert len(new.history) <= HISTORY_LIMIT
        if status.is_terminal:
            assert new == status and decision.actions == ()
        if rolled_back:
            assert all(new.weights[c.name] == 0 for c in spec.challengers) and not new.mirror_percent
        rolled_back = rolled_back or new.phase == "RolledBack"
        if new.phase == "RolledBack":
            assert new.weights[CHAMPION] == 100 and new.mirror_percent is None
        changed = (new.weights, new.mirror_percent) != (status.weights, status.mirror_percent)
        assert bool(decision.actions) == changed
        if changed:
            assert dict(decision.actions[0].split.weights) == new.weights
        if spec.strategy == "canary" and (new.step or 0) > (status.step or 0) and tick["manual"] is None:
            for name, weight in status.weights.items():
                if weight > 0:
                    gained = new.samples[name].size - status.step_start_samples.get(name, 0)
                    assert gained >= spec.canary.min_samples_per_step
            assert stream.now - status.step_started_at >= parse_duration(spec.canary.step_duration)
        assert {c.type for c in new.conditions} == CONDITION_TYPES
        assert new.analysis.decision is not None and new.analysis.reason
        assert all(re.fullmatch(r"(?:[A-Z][a-z0-9]*)+", e.reason) for e in decision.events)
        assert ModelExperimentStatus.model_validate(new.to_wire()) == new  # survives the API server
        event(f"{spec.strategy} reached {new.phase}/{new.reason}")
        status = new

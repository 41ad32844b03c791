"""Webhook gates as engine observations: preStart holds the start, confirmPromotion holds the promotion,
onRollback is an action, loadTest is recorded and decides nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from factories import CHALLENGER, CHAMPION, T0, first_read, latency, make_spec, observe, started
from test_shadow_and_bandit import _arms_counts

from mlrollouts.api import ModelExperimentStatus
from mlrollouts.engine import decide
from mlrollouts.engine.gates import due
from mlrollouts.engine.types import CallWebhooks, GateResult, SetTraffic

STEP = timedelta(minutes=10)
HEALTHY = {CHAMPION: {"p95-latency": 0.2}, CHALLENGER: {"p95-latency": 0.3}}
PASSING = {CHAMPION: (2890, 28900), CHALLENGER: (1210, 12100)}


def _hook(kind: str, name: str | None = None) -> dict:
    return {"name": name or kind.lower(), "type": kind, "url": "http://gate.test/hook"}


def _spec(*kinds: str, **top):
    return make_spec(
        "canary",
        block={"steps": [10, 50, 100], "stepDuration": "10m", "minSamplesPerStep": 100},
        guardrails=[latency(max_=0.5, failure_limit=3)],
        metric={"nonInferiorityMargin": 0.9},
        webhooks=[_hook(kind) for kind in kinds],
        **top,
    )


def _answer(kind: str, passed: bool, code: int | None = None, name: str | None = None) -> tuple[GateResult, ...]:
    code = code if code is not None else (200 if passed else 503)
    return (GateResult(name or kind.lower(), kind, passed, code, f"HTTP {code}", 1),)


def _at_last_step(spec) -> ModelExperimentStatus:
    advanced = decide(
        spec, started(spec), observe(T0 + STEP, {CHAMPION: (90, 900), CHALLENGER: (10, 100)}, HEALTHY), T0 + STEP
    )
    assert advanced.status.step == 1
    return advanced.status


def test_pre_start_answering_503_moves_no_traffic_and_says_why():
    spec = _spec("preStart")
    assert due(spec, ModelExperimentStatus()) == ("preStart",)
    held = decide(
        spec, ModelExperimentStatus(), replace(first_read(), gates=_answer("preStart", False)), T0, generation=1
    )
    assert (held.status.phase, held.status.reason) == ("Pending", "AwaitingPreStart")
    assert held.actions == () and held.status.weights == {}
    assert "prestart: HTTP 503" in held.status.message
    assert [(w.name, w.phase, w.code) for w in held.status.webhooks] == [("prestart", "Failed", 503)]
    assert [e.reason for e in held.events] == ["WebhookFailed"]
    ok = decide(spec, held.status, replace(first_read(), gates=_answer("preStart", True)), T0, generation=1)
    assert ok.status.phase == "Progressing"
    assert ok.actions and isinstance(ok.actions[0], SetTraffic)
    assert ok.status.webhooks[0].phase == "Passed"
    assert "WebhookPassed" in [e.reason for e in ok.events]


def test_pre_start_never_called_holds_too():
    spec = _spec("preStart")
    held = decide(spec, ModelExperimentStatus(), first_read(), T0, generation=1)
    assert (held.status.phase, held.actions) == ("Pending", ())
    assert "prestart: not called yet" in held.status.message


def test_confirm_promotion_503_holds_at_ready_to_promote_and_200_promotes():
    spec = _spec("confirmPromotion")
    now = T0 + 2 * STEP
    ready = decide(spec, _at_last_step(spec), observe(now, PASSING, HEALTHY), now)
    assert (ready.status.phase, ready.status.reason) == ("Paused", "ReadyToPromote")
    assert ready.actions == () and ready.status.weights == {CHAMPION: 50, CHALLENGER: 50}
    assert "waiting for the confirmPromotion webhooks" in ready.status.message
    assert due(spec, ready.status) == ("confirmPromotion",)

    status = ready.status
    for tick in range(1, 4):  # 503 every tick: it holds, traffic unchanged
        at = now + timedelta(minutes=tick)
        held = decide(
            spec, status, replace(observe(at, PASSING, HEALTHY), gates=_answer("confirmPromotion", False)), at
        )
        assert (held.status.phase, held.status.reason, held.actions) == ("Paused", "ReadyToPromote", ())
        assert "confirmpromotion: HTTP 503" in held.status.message
        status = held.status
    at = now + timedelta(minutes=5)
    promoted = decide(spec, status, replace(observe(at, PASSING, HEALTHY), gates=_answer("confirmPromotion", True)), at)
    assert promoted.status.phase == "Promoted" and promoted.status.winner == CHALLENGER
    assert promoted.actions[0].split.weights == {CHAMPION: 0, CHALLENGER: 100}


def test_guardrails_still_roll_back_while_waiting_for_confirmation():
    spec = _spec("confirmPromotion", "onRollback")
    now = T0 + 2 * STEP
    status = decide(spec, _at_last_step(spec), observe(now, PASSING, HEALTHY), now).status
    slow = {CHAMPION: {"p95-latency": 0.2}, CHALLENGER: {"p95-latency": 0.9}}
    for minute in range(1, 4):
        at = now + timedelta(minutes=minute)
        result = decide(spec, status, replace(observe(at, PASSING, slow), gates=_answer("confirmPromotion", False)), at)
        status = result.status
    assert status.phase == "RolledBack"
    assert CallWebhooks("onRollback") in result.actions
    assert due(spec, status) == ()


def test_auto_promote_off_waits_for_a_person_not_the_webhook():
    spec = _spec("confirmPromotion", autoPromote=False)
    now = T0 + 2 * STEP
    ready = decide(spec, _at_last_step(spec), observe(now, PASSING, HEALTHY), now)
    assert "waiting for a manual promote (autoPromote off)" in ready.status.message
    assert due(spec, ready.status) == ()


def test_manual_promote_overrides_the_gate():
    spec = _spec("confirmPromotion")
    now = T0 + 2 * STEP
    ready = decide(spec, _at_last_step(spec), observe(now, PASSING, HEALTHY), now).status
    promoted = decide(spec, ready, observe(now, {}), now, manual="promote")
    assert promoted.status.phase == "Promoted"


def test_rollback_emits_on_rollback_only_when_configured_and_only_once():
    counts = {CHAMPION: (2700, 9000), CHALLENGER: (150, 1000)}  # significantly worse
    with_hook = _spec("onRollback")
    result = decide(with_hook, started(with_hook), observe(T0, counts, HEALTHY), T0)
    assert result.status.phase == "RolledBack"
    assert [a for a in result.actions if isinstance(a, CallWebhooks)] == [CallWebhooks("onRollback")]
    again = decide(with_hook, result.status, observe(T0, counts, HEALTHY), T0, manual="rollback")
    assert not [a for a in again.actions if isinstance(a, CallWebhooks)]
    without = _spec()
    plain = decide(without, started(without), observe(T0, counts, HEALTHY), T0)
    assert not [a for a in plain.actions if isinstance(a, CallWebhooks)]


def test_load_test_is_due_while_running_recorded_and_decides_nothing():
    spec = _spec("loadTest")
    status = started(spec)
    assert due(spec, status) == ("loadTest",)
    early = T0 + timedelta(minutes=1)
    counts = {CHAMPION: (9, 90), CHALLENGER: (1, 10)}
    failing = decide(spec, status, replace(observe(early, counts, HEALTHY), gates=_answer("loadTest", False)), early)
    passing = decide(spec, status, replace(observe(early, counts, HEALTHY), gates=_answer("loadTest", True)), early)
    assert failing.status.analysis.decision == passing.status.analysis.decision == "continue"
    assert failing.status.webhooks[0].phase == "Failed" and "WebhookFailed" in [e.reason for e in failing.events]
    assert passing.status.webhooks[0].phase == "Passed"


def test_a_bandit_winner_waits_for_the_confirm_promotion_webhook():
    """Bandit used to promote whatever autoPromote said; it now waits like canary and A/B/n."""
    spec = make_spec(
        "bandit",
        block={"minSamples": 500, "promoteThreshold": 0.95},
        webhooks=[_hook("confirmPromotion")],
    )
    counts = _arms_counts({CHAMPION: 0.10, CHALLENGER: 0.15}, 20000)
    half = T0 + timedelta(minutes=30)
    early = decide(spec, started(spec), observe(half, counts), half).status
    later = T0 + timedelta(hours=12)
    doubled = {name: (2 * s, 2 * n) for name, (s, n) in counts.items()}
    ready = decide(spec, early, observe(later, doubled), later).status
    assert (ready.phase, ready.reason) == ("Paused", "ReadyToPromote")
    frozen = dict(ready.weights)
    held = decide(spec, ready, replace(observe(later, doubled), gates=_answer("confirmPromotion", False)), later)
    assert held.status.phase == "Paused" and held.status.weights == frozen and held.actions == ()
    ok = decide(spec, ready, replace(observe(later, doubled), gates=_answer("confirmPromotion", True)), later)
    assert (ok.status.phase, ok.status.winner) == ("Promoted", CHALLENGER)
    manual = make_spec("bandit", block={"minSamples": 500, "promoteThreshold": 0.95}, autoPromote=False)
    paused = decide(
        manual, decide(manual, started(manual), observe(half, counts), half).status, observe(later, doubled), later
    )
    assert "waiting for a manual promote (autoPromote off)" in paused.status.message

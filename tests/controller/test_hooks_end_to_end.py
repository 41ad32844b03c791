"""Webhook gates and notifications end to end: the operator process, the emulated API server, real Prometheus
and a real HTTP receiver (receiver.py) that records every POST and answers what the test says.

Nothing here is timed: "a slow receiver does not delay ticks" is shown by an experiment that goes all the way
to Promoted while the slow receiver has not yet answered its first notification.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import kubernetes
import pytest
import requests
from receiver import Call, Receiver
from stack import Stack, canary_manifest
from test_operator_end_to_end import _cleanup, _route_weights, _setup, _wait_for_event

pytestmark = pytest.mark.integration
SECRET = "hook-urls"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def hooked(stack: Stack, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack's operator restarted with the platform's settings: the receiver allowed for gates and URLs."""
    monkeypatch.setenv("MLROLLOUTS_WEBHOOK_ALLOWED_ADDRESSES", receiver.address)
    monkeypatch.setenv("MLROLLOUTS_NOTIFICATION_ALLOWED_ADDRESSES", receiver.address)
    monkeypatch.setenv("MLROLLOUTS_NOTIFICATION_SECRET_NAMES", SECRET)
    monkeypatch.setenv("MLROLLOUTS_NOTIFICATION_BACKOFF", "0.05")
    stack.operator.stop()
    stack.operator.start()
    receiver.calls.clear()
    receiver.codes.clear()
    receiver.held.clear()
    receiver.release.clear()
    yield stack


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _secret(stack: Stack, urls: dict[str, str]) -> None:
    core = kubernetes.client.CoreV1Api(stack.api)
    data = {key: base64.b64encode(url.encode()).decode() for key, url in urls.items()}
    with contextlib.suppress(kubernetes.client.ApiException):
        core.delete_namespaced_secret(SECRET, "default")
    core.create_namespaced_secret("default", {"metadata": {"name": SECRET}, "data": data})


def _phase_changes(calls: list[Call]) -> list[tuple[str | None, str]]:
    return [(c.body["previousPhase"], c.body["phase"]) for c in calls if c.body["previousPhase"] != c.body["phase"]]


def test_one_post_per_phase_change_and_a_slow_or_failing_receiver_never_holds_the_experiment(
    hooked: Stack, receiver: Receiver
) -> None:
    stack = hooked
    name = "notified"
    _secret(stack, {key: f"{receiver.address}/{key}" for key in ("fast", "slow", "failing", "slack", "teams")})
    receiver.held.add("/slow")
    receiver.codes["/failing"] = 500
    _setup(stack, name)
    stack.exporter.control("churn-v2", success=0.72)
    stack.exporter.control("churn-v3", success=0.78)
    receivers = [
        ("fast", "webhook"),
        ("slow", "webhook"),
        ("failing", "webhook"),
        ("slack", "slack"),
        ("teams", "msteams"),
    ]
    manifest = canary_manifest(
        name,
        stack.prometheus.address,
        notifications=[
            {"name": key, "type": kind, "urlSecretRef": {"name": SECRET, "key": key}} for key, kind in receivers
        ],
    )
    stack.create(manifest)
    stack.follow_traffic(name)
    try:
        status = stack.wait_for(name, lambda s: s.get("phase") == "Promoted", 90, "phase Promoted")
        # The slow receiver has not answered its first notification: no tick waited for it.
        assert len(receiver.to("/slow")) == 1, "one request in flight, the rest queued behind it"
        _until(lambda: any(c.body["phase"] == "Promoted" for c in receiver.to("/fast")), 10, "Promoted POST")
        fast = receiver.to("/fast")
        changes = _phase_changes(fast)
        assert changes[-1] == ("Progressing", "Promoted")
        assert [after for _, after in changes] == list(dict.fromkeys(after for _, after in changes)), changes
        assert all(
            before == previous_after for (before, _), (_, previous_after) in zip(changes[1:], changes, strict=False)
        )
        advances = [c for c in fast if c.body["decision"] == "advance"]
        assert len(advances) == sum(1 for h in status["history"] if h["action"] == "advance")
        last = fast[-1].body
        assert last["experiment"] == name and last["namespace"] == "default"
        assert last["weights"] == {"churn-v2": 0, "churn-v3": 100}
        assert last["primaryMetric"]["name"] == "retention" and last["primaryMetric"]["challenger"] == "churn-v3"
        assert last["statusCommand"] == f"mlrollouts status {name} -n default"
        delays = [c.wall - datetime.fromisoformat(c.body["time"]).timestamp() for c in fast]
        print(f"notification delay after the deciding tick: max {max(delays):.3f}s over {len(delays)} POSTs")
        slack = receiver.to("/slack")[-1].body
        assert "default/notified" in slack["text"] and slack["attachments"][0]["fields"]
        teams = receiver.to("/teams")[-1].body
        assert teams["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"

        receiver.release.set()  # the slow receiver catches up, in order, with every notification
        _until(lambda: len(receiver.to("/slow")) == len(fast), 15, "the slow receiver to catch up")
        assert [c.body for c in receiver.to("/slow")] == [c.body for c in fast]

        _wait_for_event(stack, name, "NotificationFailed", "Warning", "notification to failing (webhook) failed")
        metrics = requests.get(f"http://127.0.0.1:{stack.operator.metrics_port}/metrics", timeout=5).text
        failed = [
            line
            for line in metrics.splitlines()
            if line.startswith("mlrollouts_notifications_total{") and 'receiver="failing"' in line
        ]
        assert failed and 'result="failed"' in failed[0] and float(failed[0].split()[-1]) >= 1
    finally:
        _cleanup(stack, name)


def _hook(kind: str, receiver: Receiver, **extra: object) -> dict:
    return {
        "name": kind.lower(),
        "type": kind,
        "url": f"{receiver.address}/{kind}",
        "timeout": "2s",
        "retries": 0,
        **extra,
    }


def test_confirm_promotion_503_holds_at_ready_to_promote_and_200_promotes(hooked: Stack, receiver: Receiver) -> None:
    stack = hooked
    name = "confirmed"
    receiver.codes["/confirmPromotion"] = 503
    _setup(stack, name)
    stack.exporter.control("churn-v2", success=0.72)
    stack.exporter.control("churn-v3", success=0.78)
    stack.create(
        canary_manifest(name, stack.prometheus.address, steps=[20, 100], webhooks=[_hook("confirmPromotion", receiver)])
    )
    stack.follow_traffic(name)
    try:
        stack.wait_for(name, lambda s: s.get("reason") == "ReadyToPromote", 60, "ReadyToPromote")
        _until(lambda: len(receiver.to("/confirmPromotion")) >= 3, 20, "three confirmPromotion calls")
        status = stack.status(name)
        assert (status["phase"], status["reason"]) == ("Paused", "ReadyToPromote")
        assert "confirmpromotion: HTTP 503" in status["message"]
        assert status["webhooks"][0]["phase"] == "Failed" and status["webhooks"][0]["code"] == 503
        assert _route_weights(stack) == {"churn-v2": 80, "churn-v3": 20}, "held: no traffic moved"
        call = receiver.to("/confirmPromotion")[-1].body
        assert (call["type"], call["webhook"], call["phase"]) == ("confirmPromotion", "confirmpromotion", "Paused")
        _wait_for_event(stack, name, "WebhookFailed", "Warning", "confirmPromotion webhook confirmpromotion: HTTP 503")

        receiver.codes["/confirmPromotion"] = 200
        status = stack.wait_for(name, lambda s: s.get("phase") == "Promoted", 30, "Promoted after a 200")
        assert _route_weights(stack) == {"churn-v2": 0, "churn-v3": 100}
        assert "confirmPromotion webhooks answered 2xx" in status["message"]
    finally:
        _cleanup(stack, name)


def test_pre_start_503_moves_no_traffic_then_load_test_runs_and_rollback_is_announced(
    hooked: Stack, receiver: Receiver
) -> None:
    stack = hooked
    name = "gated"
    receiver.codes["/preStart"] = 503
    _setup(stack, name)
    hooks = [
        _hook("preStart", receiver),
        _hook("loadTest", receiver, metadata={"cmd": "hey -z 1m http://churn"}),
        _hook("onRollback", receiver),
    ]
    stack.create(canary_manifest(name, stack.prometheus.address, steps=[20, 100], webhooks=hooks))
    stack.follow_traffic(name)
    try:
        _until(lambda: len(receiver.to("/preStart")) >= 3, 30, "three preStart calls")
        status = stack.status(name)
        assert (status["phase"], status["reason"]) == ("Pending", "AwaitingPreStart")
        assert _route_weights(stack) == {"churn-v2": 100}, "no traffic before preStart answers 2xx"
        assert not receiver.to("/loadTest")

        receiver.codes["/preStart"] = 200
        stack.wait_for(name, lambda s: s.get("phase") == "Progressing", 30, "Progressing after a 200")
        _until(lambda: len(receiver.to("/loadTest")) >= 2, 20, "loadTest calls while the step runs")
        load = receiver.to("/loadTest")[-1].body
        assert load["metadata"] == {"cmd": "hey -z 1m http://churn"} and load["phase"] == "Progressing"

        stack.exporter.control("churn-v3", latency=2.0)
        status = stack.wait_for(name, lambda s: s.get("phase") == "RolledBack", 45, "RolledBack")
        rollback = receiver.to("/onRollback")
        assert len(rollback) == 1 and rollback[0].body["phase"] == "RolledBack"
        assert rollback[0].body["previousPhase"] == "Progressing", "the phase it rolled back from"
        assert rollback[0].body["weights"] == {"churn-v2": 100, "churn-v3": 0}
        recorded = {w["name"]: w for w in status["webhooks"]}
        assert recorded["onrollback"]["phase"] == "Passed" and recorded["prestart"]["phase"] == "Passed"
    finally:
        _cleanup(stack, name)


def test_addresses_and_secrets_the_platform_did_not_allow_make_the_experiment_invalid(
    hooked: Stack, receiver: Receiver
) -> None:
    stack = hooked
    gate = canary_manifest(
        "gate-elsewhere",
        stack.prometheus.address,
        webhooks=[{"name": "exfil", "type": "preStart", "url": "http://169.254.169.254/latest/meta-data"}],
    )
    secret = canary_manifest(
        "secret-elsewhere",
        stack.prometheus.address,
        notifications=[{"name": "steal", "urlSecretRef": {"name": "someone-elses", "key": "url"}}],
    )
    secret["spec"]["traffic"]["istio"]["virtualService"] = "churn-other"  # not a rival of the first one
    stack.create(gate)
    stack.create(secret)
    try:
        status = stack.wait_for("gate-elsewhere", lambda s: s.get("phase") == "Invalid", 15, "Invalid")
        assert "spec.webhooks[0].url" in status["message"] and "webhooks.allowedAddresses" in status["message"]
        status = stack.wait_for("secret-elsewhere", lambda s: s.get("phase") == "Invalid", 15, "Invalid")
        assert "spec.notifications[0].urlSecretRef" in status["message"]
        assert "notifications.secretNames" in status["message"]
        assert not receiver.calls
    finally:
        _cleanup(stack, "gate-elsewhere", "secret-elsewhere")


def test_deleting_a_running_experiment_calls_on_rollback_and_notifies_and_a_hung_hook_does_not_hold_it(
    hooked: Stack, receiver: Receiver
) -> None:
    """Flagger users expect an aborted canary to fire its rollback hook and notification, as a rollback does."""
    stack = hooked
    name = "aborted"
    _secret(stack, {"audit": f"{receiver.address}/audit"})
    receiver.held.add("/hung")
    hooks = [
        _hook("onRollback", receiver),
        {**_hook("onRollback", receiver), "name": "hung", "url": f"{receiver.address}/hung"},
    ]
    _setup(stack, name)
    notifications = [{"name": "audit", "urlSecretRef": {"name": SECRET, "key": "audit"}}]
    stack.create(
        canary_manifest(name, stack.prometheus.address, steps=[30, 100], webhooks=hooks, notifications=notifications)
    )
    try:
        stack.wait_for(name, lambda s: s.get("weights", {}).get("churn-v3") == 30, 30, "first step")
        _cleanup(stack, name, vs="keep")
        items = stack.objects.list_namespaced_custom_object("mlrollouts.dev", "v1alpha1", "default", "modelexperiments")
        assert name not in [i["metadata"]["name"] for i in items["items"]], "a hung onRollback hook held the delete"
        assert _route_weights(stack) == {"churn-v2": 100, "churn-v3": 0}
        rollback = receiver.to("/onRollback")
        assert len(rollback) == 1, "onRollback is called once, after traffic is back on the champion"
        body = rollback[0].body
        assert (body["phase"], body["reason"], body["previousPhase"]) == ("RolledBack", "Deleted", "Progressing")
        assert body["weights"] == {"churn-v2": 100, "churn-v3": 0} and body["decision"] == "rollback"
        _until(lambda: any(c.body["phase"] == "RolledBack" for c in receiver.to("/audit")), 10, "the notification")
        audit = next(c.body for c in receiver.to("/audit") if c.body["phase"] == "RolledBack")
        assert (audit["previousPhase"], audit["reason"]) == ("Progressing", "Deleted")
        assert "deleted while Progressing" in audit["message"]
        _wait_for_event(stack, name, "WebhookFailed", "Warning", "onRollback webhook hung")
    finally:
        receiver.release.set()
        _cleanup(stack, name)

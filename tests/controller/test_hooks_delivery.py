"""Delivery of gates and notifications against a real HTTP receiver, without a cluster: retries and backoff,
no redirects, the allow-lists (the attack first), the platform's default receivers and the operator flags."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from receiver import Receiver
from stack import canary_manifest

from mlrollouts.api import ModelExperimentStatus, parse_experiment
from mlrollouts.cli.hook_options import hook_policy
from mlrollouts.cli.main import UsageFailure
from mlrollouts.controller.ports import Runtime
from mlrollouts.engine.types import Event
from mlrollouts.hooks import gates
from mlrollouts.hooks.http import post_json
from mlrollouts.hooks.notifier import Notifier
from mlrollouts.hooks.policy import DefaultReceiver, HookPolicy
from mlrollouts.routing.fake import FakeKubeObjects

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def _post(url: str, **options: Any):
    async def run():
        async with httpx.AsyncClient() as client:
            return await post_json(client, url, {"x": 1}, timeout=2, backoff=0.01, **options)

    return asyncio.run(run())


def test_5xx_is_retried_with_backoff_until_2xx(receiver: Receiver) -> None:
    receiver.script["/flaky"] = [503, 500]
    answer = _post(f"{receiver.address}/flaky", retries=2)
    assert (answer.passed, answer.code, answer.attempts) == (True, 200, 3)
    assert len(receiver.to("/flaky")) == 3


def test_4xx_is_not_retried_and_retries_are_bounded(receiver: Receiver) -> None:
    receiver.codes["/wrong"] = 404
    receiver.codes["/down"] = 500
    assert _post(f"{receiver.address}/wrong", retries=3).attempts == 1
    down = _post(f"{receiver.address}/down", retries=2)
    assert (down.passed, down.attempts, len(receiver.to("/down"))) == (False, 3, 3)
    assert down.message.startswith("HTTP 500")


def test_a_redirect_is_a_failure_and_never_followed(receiver: Receiver) -> None:
    receiver.codes["/hop"] = 302
    receiver.headers["/hop"] = {"Location": f"{receiver.address}/elsewhere"}
    answer = _post(f"{receiver.address}/hop", retries=0)
    assert not answer.passed and answer.code == 302
    assert not receiver.to("/elsewhere")


def test_a_gate_outside_the_allowed_addresses_is_never_called(receiver: Receiver) -> None:
    manifest = canary_manifest(
        "gated", "http://127.0.0.1:9", webhooks=[{"name": "g", "type": "preStart", "url": f"{receiver.address}/g"}]
    )
    experiment = parse_experiment(manifest)
    policy = HookPolicy(gate_addresses=("http://gates.platform:8080",))
    assert [p.path for p in policy.problems(experiment)] == ["spec.webhooks[0].url"]

    async def run():
        async with httpx.AsyncClient() as client:
            return await gates.call(experiment, "preStart", T0, client, policy)

    (result,) = asyncio.run(run())
    assert not result.passed and "not allowed" in result.message
    assert not receiver.calls


class _Notified:
    """A Notifier over a dict of Secrets and a list of Events."""

    def __init__(self, policy: HookPolicy, secrets: Mapping[tuple[str, str, str], bytes]) -> None:
        self.events: list[Event] = []
        self.secrets = secrets
        self.policy = policy

    async def run(self, manifest: dict[str, Any]) -> None:
        async def read_secret(namespace: str, name: str, key: str) -> bytes:
            try:
                return self.secrets[(namespace, name, key)]
            except KeyError:
                raise LookupError("not found") from None

        async def post_event(involved: Mapping[str, Any], event: Event) -> None:
            self.events.append(event)

        async with httpx.AsyncClient() as client:
            notifier = Notifier(self.policy, read_secret, post_event, lambda: client, retries=1, backoff=0.01)
            experiment = parse_experiment(manifest)
            promoted = ModelExperimentStatus(
                phase="Promoted", reason="Promoted", weights={"churn-v2": 0, "churn-v3": 100}
            )
            running = ModelExperimentStatus(phase="Progressing", reason="Started")
            queued = notifier.submit(experiment.model_copy(update={"status": promoted}), running, T0)
            assert queued == len(self.policy.default_receivers) + len(experiment.spec.notifications or [])
            await notifier.idle()


def _receivers(*entries: tuple[str, str]) -> dict[str, Any]:
    return canary_manifest(
        "told",
        "http://127.0.0.1:9",
        notifications=[{"name": n, "type": "webhook", "urlSecretRef": {"name": "urls", "key": k}} for n, k in entries],
    )


def test_a_secret_url_outside_the_allowed_addresses_is_never_posted_to(receiver: Receiver) -> None:
    """The attack: a tenant's Secret points the operator at an internal address; nothing may be sent there."""
    secrets = {("default", "urls", "internal"): f"{receiver.address}/internal".encode()}
    told = _Notified(
        HookPolicy(notification_addresses=("https://hooks.slack.com",), notification_secret_names=frozenset({"urls"})),
        secrets,
    )
    asyncio.run(told.run(_receivers(("internal", "internal"))))
    assert not receiver.calls
    (event,) = told.events
    assert (event.type, event.reason) == ("Warning", "NotificationFailed")
    assert "notifications.allowedAddresses" in event.message


def test_allowed_receivers_and_the_platform_default_each_get_one_post(receiver: Receiver) -> None:
    secrets = {("default", "urls", "team"): f"  {receiver.address}/team\n".encode()}
    policy = HookPolicy(
        notification_addresses=(receiver.address,),
        notification_secret_names=frozenset({"urls"}),
        default_receivers=(DefaultReceiver("platform", "slack", f"{receiver.address}/platform"),),
    )
    told = _Notified(policy, secrets)
    asyncio.run(told.run(_receivers(("team", "team"), ("missing", "absent"))))
    assert [c.body["phase"] for c in receiver.to("/team")] == ["Promoted"]
    assert receiver.to("/team")[0].body["previousPhase"] == "Progressing"
    assert "Promoted" in receiver.to("/platform")[0].body["text"]
    assert [e.reason for e in told.events] == ["NotificationFailed"]
    assert "secret default/urls" in told.events[0].message


def test_operator_flags_name_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_URL", "https://hooks.slack.com/services/T/B/X")
    policy = hook_policy(["gates.platform:8080"], ["https://hooks.slack.com"], ["notify"], ["platform:slack:SLACK_URL"])
    assert policy.default_receivers == (DefaultReceiver("platform", "slack", "https://hooks.slack.com/services/T/B/X"),)
    bad = [
        (["ftp://x"], [], [], [], "--webhook-allowed-address"),
        ([], ["http://a@b"], [], [], "--notification-allowed-address"),
        ([], [], ["Not_A_Name"], [], "--notification-secret-name"),
        ([], [], [], ["platform:discord:SLACK_URL"], "--default-notification"),
        ([], [], [], ["platform:slack:UNSET_VARIABLE"], "--default-notification"),
    ]
    for gates_, receivers, names, defaults, flag in bad:
        with pytest.raises(UsageFailure) as raised:
            hook_policy(gates_, receivers, names, defaults)
        assert raised.value.argument == flag, raised.value


def test_closing_the_runtime_lets_queued_notifications_go_out_first(receiver: Receiver) -> None:
    policy = HookPolicy(default_receivers=(DefaultReceiver("platform", "webhook", f"{receiver.address}/platform"),))
    manifest = _receivers()
    experiment = parse_experiment(manifest)

    async def run() -> None:
        runtime = Runtime(FakeKubeObjects(), hooks=policy)
        promoted = experiment.model_copy(update={"status": ModelExperimentStatus(phase="Promoted", reason="Promoted")})
        assert runtime.notifier.submit(promoted, ModelExperimentStatus(phase="Progressing"), T0) == 1
        await runtime.close()

    asyncio.run(run())
    assert [c.body["phase"] for c in receiver.to("/platform")] == ["Promoted"]


def test_notification_urls_may_carry_a_query_but_never_smuggle_a_host() -> None:
    policy = HookPolicy(
        notification_addresses=("https://prod-01.westeurope.logic.azure.com:443/workflows", "https://hooks.slack.com")
    )
    teams = (
        "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=x"
    )
    assert policy.allows_notification(teams)
    assert policy.allows_notification("https://hooks.slack.com/services/T/B/X")
    for attack in (
        "https://hooks.slack.com?@evil.test/",
        "https://hooks.slack.com@evil.test/",
        "https://hooks.slack.com.evil.test/services",
        "https://evil.test/?https://hooks.slack.com",
        "https://hooks.slack.com\\@evil.test/",
        "https://hooks.slack.com#@evil.test",
        "http://hooks.slack.com/services/T/B/X",
    ):
        assert not policy.allows_notification(attack), attack
    assert not HookPolicy(gate_addresses=("https://gates.test",)).allows_gate("https://gates.test/x?y=1")

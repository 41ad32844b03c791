"""The attack from issue 11: an experiment names its own address and someone's Secret; the token must not leave.

Each test drives the operator's real tick (reconcile with the Runtime's metrics factory and Secret reader) against
an in-memory API server holding a real Secret, and a real HTTP listener that records every request it receives.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from stack import canary_manifest

from mlrollouts.api import parse_experiment
from mlrollouts.controller.ports import Runtime
from mlrollouts.controller.tick import TickPorts, reconcile
from mlrollouts.engine.types import Event
from mlrollouts.metrics.policy import CredentialPolicy
from mlrollouts.routing.fake import FakeKubeObjects
from recording_listener import recording_listener

TOKEN = "s3cret-token"
TOKEN_REF = {"name": "prom-token", "key": "token"}


class _Objects(FakeKubeObjects):
    """Records which Secrets the operator read."""

    def __init__(self) -> None:
        super().__init__()
        self.secret_reads: list[tuple[str, str]] = []

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        if plural == "secrets":
            self.secret_reads.append((namespace, name))
        return await super().get(api_version, plural, namespace, name)


def _cluster(namespace: str = "default") -> _Objects:
    objects = _Objects()
    for ns in (namespace, "kube-system"):
        secret = {"name": "prom-token", "namespace": ns}
        objects.add(
            "secrets",
            {"apiVersion": "v1", "metadata": secret, "data": {"token": base64.b64encode(b"s3cret-token").decode()}},
        )
    return objects


def _manifest(address: str, **prometheus: Any) -> dict[str, Any]:
    manifest = canary_manifest("stealer", address)
    manifest["metadata"]["resourceVersion"] = "1"
    manifest["spec"]["analysis"]["prometheus"].update(prometheus)
    return manifest


def _tick(runtime: Runtime, manifest: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
    written: dict[str, Any] = {}
    events: list[Event] = []

    async def write_status(namespace: str, name: str, status: dict[str, Any], version: str | None) -> None:
        written.update(status)

    async def clear_annotation(namespace: str, name: str, key: str) -> None:
        raise AssertionError("no annotation to clear")

    async def post_event(event: Event) -> None:
        events.append(event)

    ports = TickPorts(
        metrics_for=runtime.metrics_for,
        router_for=runtime.router_for,
        write_status=write_status,
        clear_annotation=clear_annotation,
        post_event=post_event,
        conflict_with=lambda experiment: None,
    )
    asyncio.run(reconcile(manifest, datetime.now(UTC), ports))
    return written, events


def test_a_token_is_not_sent_to_an_address_the_platform_did_not_allow() -> None:
    objects = _cluster()
    policy = CredentialPolicy(("https://prometheus.monitoring:9090",), secret_names=frozenset({"prom-token"}))
    with recording_listener() as attacker:
        status, events = _tick(
            Runtime(objects, credentials=policy), _manifest(attacker.url, bearerTokenSecretRef=TOKEN_REF)
        )
    assert attacker.requests == []
    assert objects.secret_reads == []  # not even read
    assert status["phase"] == "Invalid"
    message = status["message"]
    assert "spec.analysis.prometheus.address" in message and attacker.url in message
    assert "prometheus.allowedAddresses" in message and "https://prometheus.monitoring:9090" in message
    assert [e.reason for e in events] == ["InvalidSpec"]


def test_a_ca_secret_is_refused_on_an_unlisted_address_too() -> None:
    objects = _cluster()
    with recording_listener() as attacker:
        manifest = _manifest(attacker.url, caSecretRef={"name": "prom-token", "key": "token"})
        status, _ = _tick(
            Runtime(objects, credentials=CredentialPolicy(secret_names=frozenset({"prom-token"}))), manifest
        )
    assert attacker.requests == [] and objects.secret_reads == []
    assert status["phase"] == "Invalid" and "caSecretRef" in status["message"]
    assert "only for these Prometheus addresses: none" in status["message"]


def test_by_default_no_secret_is_read_even_for_an_allowed_address() -> None:
    objects = _cluster()
    with recording_listener() as prometheus:
        policy = CredentialPolicy((prometheus.url,))  # address allowed, but the chart allows no Secret names
        status, _ = _tick(
            Runtime(objects, credentials=policy), _manifest(prometheus.url, bearerTokenSecretRef=TOKEN_REF)
        )
    assert prometheus.requests == [] and objects.secret_reads == []
    assert status["phase"] == "Invalid"
    assert "spec.analysis.prometheus.bearerTokenSecretRef" in status["message"]
    assert 'secret "prom-token"' in status["message"] and "prometheus.secretNames" in status["message"]


def test_an_allowed_address_and_secret_get_the_token_from_the_experiments_own_namespace() -> None:
    """The positive control: the same listener does receive the token when the platform allows both."""
    objects = _cluster()
    # As Prometheus answers the `sum by (variant)` query each of the manifest's templates becomes: a series a variant.
    series = [{"metric": {"variant": v}, "value": [0, "5"]} for v in ("churn-v2", "churn-v3")]
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}}).encode()
    with recording_listener(body=body) as prometheus:
        policy = CredentialPolicy((prometheus.url,), secret_names=frozenset({"prom-token"}))
        runtime = Runtime(objects, credentials=policy)
        experiment = parse_experiment(_manifest(prometheus.url, bearerTokenSecretRef=TOKEN_REF))
        provider = asyncio.run(runtime.metrics_for(experiment))
        observations = asyncio.run(provider.observe(experiment, datetime.now(UTC)))
    assert observations.errors == ()
    assert prometheus.requests and prometheus.authorizations == {f"Bearer {TOKEN}"}
    assert set(objects.secret_reads) == {("default", "prom-token")}  # never kube-system's namesake


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        (401, "HTTP 401 from Prometheus at {url}: credentials refused"),
        (403, "HTTP 403 from Prometheus at {url}: credentials refused"),
        (500, "HTTP 500 bad_data from Prometheus at {url}"),
        (404, "HTTP 404 bad_data from Prometheus at {url}"),
        (400, "bad query (HTTP 400 bad_data from Prometheus at {url})"),
    ],
)
def test_error_bodies_never_reach_the_status(status_code: int, expected: str) -> None:
    body = b'{"status":"error","errorType":"bad_data","error":"internal admin console: db-password=hunter2"}'
    with recording_listener(status=status_code, body=body) as server:
        experiment = parse_experiment(_manifest(server.url))
        provider = asyncio.run(Runtime(_cluster()).metrics_for(experiment))
        text = "\n".join(asyncio.run(provider.observe(experiment, datetime.now(UTC))).errors)
    assert server.requests  # it was asked: the status message is built from these errors
    assert "hunter2" not in text and "admin console" not in text
    assert expected.format(url=server.url) in text


def test_a_redirect_is_not_followed_with_the_token() -> None:
    with recording_listener() as elsewhere, recording_listener(status=302, body=b"") as allowed:
        allowed.headers["Location"] = f"{elsewhere.url}/api/v1/query"
        policy = CredentialPolicy((allowed.url,), secret_names=frozenset({"prom-token"}))
        experiment = parse_experiment(_manifest(allowed.url, bearerTokenSecretRef=TOKEN_REF))
        runtime = Runtime(_cluster(), credentials=policy)
        observations = asyncio.run(asyncio.run(runtime.metrics_for(experiment)).observe(experiment, datetime.now(UTC)))
    assert allowed.requests and elsewhere.requests == []
    assert "answered with a redirect, which is not followed" in observations.errors[0]


def test_the_default_address_is_used_when_the_platform_sets_one() -> None:
    """A manifest without spec.analysis.prometheus.address uses the chart's prometheus.defaultAddress."""
    with recording_listener() as prometheus:
        manifest = _manifest("http://unused:9090")
        del manifest["spec"]["analysis"]["prometheus"]["address"]
        experiment = parse_experiment(manifest)
        runtime = Runtime(_cluster(), credentials=CredentialPolicy(default_address=prometheus.url))
        provider = asyncio.run(runtime.metrics_for(experiment))
        asyncio.run(provider.observe(experiment, datetime.now(UTC)))
        assert prometheus.requests
        unset = CredentialPolicy().problems(experiment)
    assert [p.path for p in unset] == ["spec.analysis.prometheus.address"]
    assert "prometheus.defaultAddress" in unset[0].message

"""Feedback across gateway replicas (issue 11): one token counts once in total, however many replicas see it.

Real `mlrollouts gateway` processes sharing one signing key, as replicas behind a Service are."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.gateway.conftest import SIGNING_KEY

from mlrollouts.gateway import tokens
from mlrollouts.gateway.ownership import Forward, Mine, Ownership, Refuse
from mlrollouts.gateway.tokens import Claims, KeyRing, TokenSigner
from mlrollouts.localstack import ports

ENTRY = "import sys; from mlrollouts.cli.main import main; sys.exit(main())"
READY_S = 120
"""A bound for a gateway's start-up on a loaded machine (imports, uvicorn), not a speed target."""


def free_port(*hosts: str) -> int:
    """A port free on every host (replicas share --metrics-port, as pods of one Deployment do)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        try:
            for host in hosts:
                with socket.socket() as sock:
                    sock.bind((host, port))
        except OSError:
            continue
        return port
    raise AssertionError("no port free on every host")


@dataclass
class Replica:
    host: str
    port: int
    metrics_port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def predict(self, user: str) -> httpx.Response:
        return httpx.post(f"{self.url}/predict", json={"x": 1}, headers={"x-user-id": user}, timeout=10)

    def feedback(self, token: str, **fields: object) -> httpx.Response:
        return httpx.post(f"{self.url}/feedback", json={"token": token} | fields, timeout=10)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"http://{self.host}:{self.metrics_port}/metrics", timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )


@contextmanager
def replica(models, split: Path, host: str, metrics_port: int, *extra: str) -> Iterator[Replica]:
    """A gateway on `host`, on a public port it holds itself (ports.start_owning), logging beside the split."""
    command = [sys.executable, "-c", ENTRY, "gateway", "--experiment", "churn-exp", "--split-file", str(split)]
    command += ["--host", host, "--metrics-port", str(metrics_port), "--log-level", "warning"]
    command += [f"--upstream={name}={url}" for name, (_, url) in models.items()]
    command += list(extra)
    env = os.environ | {"MLROLLOUTS_GATEWAY_SIGNING_KEYS": SIGNING_KEY}
    log_path = split.parent / f"gateway-{host}.log"
    with_port = lambda picked: [*command, "--port", str(picked[0])]  # noqa: E731
    process, (port,) = ports.start_owning(with_port, 1, env, log_path, timeout=READY_S, pick=lambda: free_port(host))
    running = Replica(host, port, metrics_port, process)
    try:
        deadline = time.monotonic() + READY_S
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"gateway did not become ready in {READY_S} s"
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


@pytest.fixture
def split(tmp_path: Path) -> Path:
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"churn-v2": 100, "churn-v3": 0}))
    return path


@pytest.mark.integration
def test_one_token_posted_to_every_replica_counts_once_in_total(models, split: Path) -> None:
    """The attack: replicas share the signing key but not their replay memory, so without an owner for each
    token the same outcome counted once per replica."""
    metrics_port = free_port("127.0.0.1", "127.0.0.2")
    with ExitStack() as stack:
        first = stack.enter_context(replica(models, split, "127.0.0.1", metrics_port))
        second = stack.enter_context(replica(models, split, "127.0.0.2", metrics_port))
        token = first.predict("alice").headers["x-mlrollouts-token"]
        answers = [gateway.feedback(token, reward=1) for _ in range(5) for gateway in (first, second)]
        counted = sum(gateway.metric("model_outcomes_total", outcome="success") for gateway in (first, second))
        assert counted == 1, [(answer.status_code, answer.text) for answer in answers]
        assert [answer.status_code for answer in answers].count(200) == 1


@pytest.mark.integration
def test_with_advertised_addresses_any_replica_takes_feedback_and_the_issuer_counts_it(models, split: Path) -> None:
    metrics_port = free_port("127.0.0.1", "127.0.0.2")
    with ExitStack() as stack:
        first = stack.enter_context(replica(models, split, "127.0.0.1", metrics_port, "--advertise-address=127.0.0.1"))
        second = stack.enter_context(replica(models, split, "127.0.0.2", metrics_port, "--advertise-address=127.0.0.2"))
        tokens = [first.predict(f"user-{index}").headers["x-mlrollouts-token"] for index in range(3)]
        tokens += [second.predict(f"user-{index}").headers["x-mlrollouts-token"] for index in range(3, 5)]
        answers = [gateway.feedback(token, reward=1) for token in tokens for gateway in (second, first, second)]
        codes = [answer.status_code for answer in answers]
        assert codes.count(200) == 5 and codes.count(409) == 10, [answer.text for answer in answers]
        assert answers[0].json()["variant"] == "churn-v2"  # the issuer's answer, relayed
        assert first.metric("model_outcomes_total", outcome="success") == 3  # each counted where issued
        assert second.metric("model_outcomes_total", outcome="success") == 2
        assert second.metric("ab_test_feedback_forwarded_total", result="counted") == 3
        assert second.metric("ab_test_feedback_forwarded_total", result="refused") == 3  # replays, refused by first
        assert first.metric("ab_test_feedback_forwarded_total", result="refused") == 2  # second's, replayed
        first.process.send_signal(signal.SIGTERM)  # the issuer goes, and its counters with it
        first.process.communicate(timeout=10)
        late = tokens[0]
        answer = second.feedback(late, reward=0)
        assert answer.status_code == 503 and "does not answer" in answer.json()["error"]
        assert second.metric("ab_test_feedback_forwarded_total", result="unreachable") == 1
        assert second.metric("model_outcomes_total", outcome="failure") == 0


@pytest.mark.integration
def test_a_restarted_replica_refuses_the_tokens_of_its_previous_life(models, split: Path) -> None:
    """Its replay memory is gone; counting old tokens again could count an outcome twice."""
    metrics_port = free_port("127.0.0.1")
    with replica(models, split, "127.0.0.1", metrics_port, "--advertise-address=127.0.0.1") as before:
        token = before.predict("dave").headers["x-mlrollouts-token"]
        assert before.feedback(token, reward=1).status_code == 200
    with replica(models, split, "127.0.0.1", metrics_port, "--advertise-address=127.0.0.1") as after:
        answer = after.feedback(token, reward=1)
        assert answer.status_code == 410 and "restarted" in answer.json()["error"]
        assert after.metric("model_outcomes_total", outcome="success") == 0
        assert after.metric("ab_test_feedback_rejected_total", reason="issuer") == 1
        fresh = after.predict("dave").headers["x-mlrollouts-token"]
        assert after.feedback(fresh, reward=1).status_code == 200


def claims(issuer: str | None, instance: str | None) -> Claims:
    return Claims("churn-exp", "churn-v2", "v2", "r1", 2_000_000_000, False, "nonce", issuer, instance)


def test_only_the_issuing_process_counts_a_token() -> None:
    alone = Ownership(None, "me", 9102)
    assert alone.decide(claims(None, "me")) == Mine()
    assert alone.decide(claims(None, None)) == Mine()  # an older gateway's token, one replica: as before
    assert isinstance(alone.decide(claims(None, "before-restart")), Refuse)
    assert alone.decide(claims("10.0.0.7", "peer")) == Forward("http://10.0.0.7:9102/internal/feedback")
    replica = Ownership("10.0.0.5", "me", 9102)
    assert replica.decide(claims("10.0.0.5", "me")) == Mine()
    assert "restarted" in replica.decide(claims("10.0.0.5", "before-restart")).message
    assert "older gateway" in replica.decide(claims(None, None)).message  # which replica counted it? unknown
    assert replica.decide(claims("fd00::7", "peer")) == Forward("http://[fd00::7]:9102/internal/feedback")
    for smuggled in ("evil.example:80", "user@evil.example", "evil.example/path", "10.0.0.7 "):
        assert isinstance(replica.decide(claims(smuggled, "peer")), Refuse)  # only ever host:--metrics-port


def old_format_token(key: str, **overrides: object) -> str:
    """A token as gateways signed them before they named their issuer (no "p", no "a")."""
    document = {"x": "churn-exp", "v": "churn-v3", "m": "v3", "r": "r-old", "e": 2_000_000_000, "f": False}
    payload = tokens._b64(json.dumps(document | {"n": "old-nonce"} | overrides).encode())
    return f"{payload}.{tokens._b64(tokens._mac(key.encode(), payload))}"


@pytest.mark.integration
def test_a_single_replica_still_counts_tokens_of_the_old_format_once(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    token = old_format_token(SIGNING_KEY)
    assert [gateway.feedback(token, reward=1).status_code for _ in range(3)] == [200, 409, 409]
    assert gateway.metric("model_outcomes_total", variant="churn-v3", outcome="success") == 1


@pytest.mark.integration
def test_replicas_without_advertised_addresses_refuse_rather_than_count_twice(start_gateway) -> None:
    first, second = start_gateway({"churn-v2": 100, "churn-v3": 0}), start_gateway({"churn-v2": 100, "churn-v3": 0})
    token = first.predict("carol").headers["x-mlrollouts-token"]
    answer = second.feedback(token, reward=1)
    assert answer.status_code == 410 and "--advertise-address" in answer.json()["error"]
    assert first.feedback(token, reward=1).status_code == 200
    assert first.metric("model_outcomes_total", outcome="success") == 1
    assert second.metric("model_outcomes_total", outcome="success") == 0


@pytest.mark.integration
def test_only_a_key_holder_can_make_a_replica_forward(start_gateway) -> None:
    """The SSRF probe: a token naming an address of the attacker's choosing, signed with a guessed key."""
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    stranger = TokenSigner(KeyRing(env_value="z" * 40), "churn-exp", 600, issuer="127.0.0.2")
    answer = gateway.feedback(stranger.issue("churn-v2", "v2", "r1", forced=False), reward=1)
    assert answer.status_code == 403
    payload, signature = gateway.predict("mallory").headers["x-mlrollouts-token"].split(".")
    document = json.loads(tokens._unb64(payload)) | {"a": "127.0.0.2"}  # re-point a genuine token
    tampered = f"{tokens._b64(json.dumps(document).encode())}.{signature}"
    assert gateway.feedback(tampered, reward=1).status_code == 403
    assert gateway.metric("ab_test_feedback_forwarded_total") == 0


@pytest.mark.integration
def test_the_internal_endpoint_counts_only_its_own_tokens_and_never_forwards(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    peer = TokenSigner(KeyRing(env_value=SIGNING_KEY), "churn-exp", 600, issuer="127.0.0.2", instance="peer")
    internal = f"{gateway.metrics_url}/internal/feedback"
    answer = gateway.client.post(internal, json={"token": peer.issue("churn-v2", "v2", "r1", False), "reward": 1})
    assert answer.status_code == 421
    own = gateway.predict("erin").headers["x-mlrollouts-token"]
    assert gateway.client.post(internal, json={"token": own, "reward": 1}).status_code == 200
    assert gateway.metric("ab_test_feedback_forwarded_total") == 0
    assert gateway.metric("model_outcomes_total", outcome="success") == 1
    assert gateway.client.post(f"{gateway.url}/internal/feedback", json={"token": own}).status_code == 404

"""Forged, replayed and oversized feedback (issue 11): attacks first, then the safe result."""

from __future__ import annotations

import base64
import hmac
import json
from pathlib import Path

import pytest

from mlrollouts.gateway import tokens
from mlrollouts.gateway.feedback import ReplayCache
from mlrollouts.gateway.tokens import KeyRing, SigningKeyError, TokenError, TokenSigner

KEY_A, KEY_B = "a" * 40, "b" * 40


def test_a_token_verifies_under_every_key_of_the_ring_and_expires() -> None:
    now = [1_000.0]
    signer = TokenSigner(KeyRing(env_value=KEY_A), "churn-exp", ttl_seconds=60, clock=lambda: now[0])
    token = signer.issue("churn-v3", "build7", "req-1", forced=False)
    claims = signer.verify(token)
    assert (claims.variant, claims.model_version, claims.request_id, claims.forced) == (
        "churn-v3",
        "build7",
        "req-1",
        False,
    )
    replica = TokenSigner(KeyRing(env_value=f"{KEY_B},{KEY_A}"), "churn-exp", 60, clock=lambda: now[0])
    assert replica.verify(token).nonce == claims.nonce  # a replica sharing the key accepts it
    with pytest.raises(TokenError, match="signature"):
        TokenSigner(KeyRing(env_value=KEY_B), "churn-exp", 60, clock=lambda: now[0]).verify(token)
    with pytest.raises(TokenError, match="experiment 'churn-exp'"):
        TokenSigner(KeyRing(env_value=KEY_A), "other-exp", 60, clock=lambda: now[0]).verify(token)
    now[0] += 61
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token)


def test_a_tampered_token_is_refused() -> None:
    signer = TokenSigner(KeyRing(env_value=KEY_A), "churn-exp", 60)
    payload, signature = signer.issue("churn-v2", "v2", "req-1", forced=False).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["v"] = "churn-v3"  # claim the other variant served
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for token in (f"{forged}.{signature}", "", "x" * 5000, "no-dot", f"{payload}.!!!", f"{payload}.{signature}é"):
        with pytest.raises(TokenError):
            signer.verify(token)


def test_keys_rotate_from_the_mounted_file_without_downtime(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tokens, "RELOAD_SECONDS", 0.0)
    key_file = tmp_path / "keys"
    key_file.write_text(f"{KEY_A}\n")
    signer = TokenSigner(KeyRing(key_file), "churn-exp", 600)
    old = signer.issue("churn-v2", "v2", "r1", forced=False)
    key_file.write_text(f"# new key first, old one still verifies\n{KEY_B}\n{KEY_A}\n")
    new = signer.issue("churn-v2", "v2", "r2", forced=False)
    assert signer.verify(old) and signer.verify(new)
    assert TokenSigner(KeyRing(env_value=KEY_B), "churn-exp", 600).verify(new)  # signed by the first key
    key_file.write_text("short\n")  # a broken update keeps the last good keys
    assert signer.verify(old)
    key_file.write_text(f"{KEY_B}\n")
    with pytest.raises(TokenError):
        signer.verify(old)
    assert signer.verify(new)


def test_short_or_missing_keys_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="at least 32"):
        KeyRing(env_value="short")
    empty = tmp_path / "keys"
    empty.write_text("\n# nothing\n")
    with pytest.raises(SigningKeyError, match="no key"):
        KeyRing(empty)


def test_the_replay_cache_is_bounded_in_bytes_and_never_forgets_into_a_replay() -> None:
    cache = ReplayCache(max_entries=1_000_000, max_bytes=20_000, clock=lambda: 0.0)
    for index in range(1_000):
        assert cache.claim(f"nonce-{index:06d}", expires=100 + index) is None
    assert cache.bytes <= 20_000 and 0 < len(cache) < 1_000
    for index in range(1_000):  # every nonce, remembered or evicted, is refused the second time
        assert cache.claim(f"nonce-{index:06d}", expires=100 + index) is not None
    assert cache.claim("fresh", expires=5_000) is None


@pytest.mark.integration
def test_forged_feedback_counts_nothing(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 50, "churn-v3": 50})
    other_key = TokenSigner(KeyRing(env_value=KEY_B), "churn-exp", 600)
    answers = [gateway.feedback(None, user_id=f"user-{index}", reward=1) for index in range(100)]
    answers += [gateway.feedback(None, request_id=f"req-{index}", reward=1) for index in range(100)]
    answers += [gateway.feedback(f"made-up-{index}", reward=1) for index in range(50)]
    answers += [gateway.feedback(other_key.issue("churn-v3", "v3", f"r{i}", False), reward=1) for i in range(50)]
    assert {answer.status_code for answer in answers} <= {400, 403}
    assert gateway.metric("model_outcomes_total") == 0
    assert gateway.metric("ab_test_feedback_rejected_total") == 300


@pytest.mark.integration
def test_a_token_counts_once_however_often_it_is_posted(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    token = gateway.predict("alice").headers["x-mlrollouts-token"]
    answers = [gateway.feedback(token, reward=1).status_code for _ in range(50)]
    assert answers.count(200) == 1 and answers.count(409) == 49
    assert gateway.metric("model_outcomes_total", variant="churn-v2", outcome="success") == 1


@pytest.mark.integration
@pytest.mark.parametrize("allow_override", [False, True])
def test_reusing_a_victims_request_id_binds_nothing(start_gateway, allow_override: bool) -> None:
    gateway = start_gateway({"churn-v2": 50, "churn-v3": 50}, allow_override_header=allow_override)
    victim = gateway.predict("victim-user", headers={"x-request-id": "victim-1"})
    victim_variant = victim.headers["x-mlrollouts-variant"]
    other = "churn-v3" if victim_variant == "churn-v2" else "churn-v2"
    attacker = gateway.predict(
        "attacker", headers={"x-request-id": "victim-1", "x-mlrollouts-variant": other}
    )  # forced or not, the attacker's token is its own: a fresh nonce, whatever request id it chose
    assert gateway.feedback(attacker.headers["x-mlrollouts-token"], reward=0).status_code == 200
    assert gateway.feedback(victim.headers["x-mlrollouts-token"], reward=1).json()["variant"] == victim_variant
    assert gateway.metric("model_outcomes_total", variant=victim_variant, outcome="success") == 1


@pytest.mark.integration
def test_an_out_of_range_value_records_nothing(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    for value in (1e308, -1e308, 1e10):
        token = gateway.predict("bob").headers["x-mlrollouts-token"]
        answer = gateway.feedback(token, value=value)
        assert answer.status_code == 400 and "--max-outcome-value" in answer.json()["error"]
    assert gateway.metric("model_outcome_value_count") == 0
    assert gateway.metric("model_outcome_value_sum") == 0
    assert gateway.metric("model_outcome_value_squared_total") == 0
    token = gateway.predict("bob").headers["x-mlrollouts-token"]
    assert gateway.feedback(token, value=1e9).status_code == 200
    assert gateway.metric("model_outcome_value_squared_total") == 1e18


@pytest.mark.integration
def test_the_override_header_is_off_unless_allowed(start_gateway, models) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    for index in range(10):
        response = gateway.predict(f"user-{index}", headers={"x-mlrollouts-variant": "churn-v3"})
        assert response.headers["x-mlrollouts-variant"] == "churn-v2"
    assert models["churn-v3"][0].received == []
    assert "x-mlrollouts-variant" not in models["churn-v2"][0].received[-1]["headers"]


@pytest.mark.integration
def test_forced_requests_and_their_outcomes_are_counted_apart(start_gateway) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0}, allow_override_header=True)
    for index in range(5):
        forced = gateway.predict(f"qa-{index}", headers={"x-mlrollouts-variant": "churn-v3"})
        assert forced.headers["x-mlrollouts-variant"] == "churn-v3"
        answer = gateway.feedback(forced.headers["x-mlrollouts-token"], reward=1)
        assert answer.json()["forced"] is True
    assert gateway.metric("ab_test_requests_total", variant="churn-v3") == 0  # SRM and metrics see nothing
    assert gateway.metric("ab_test_latency_seconds_count", variant="churn-v3") == 0
    assert gateway.metric("model_outcomes_total", variant="churn-v3") == 0
    assert gateway.metric("forced_ab_test_requests_total", variant="churn-v3") == 5
    assert gateway.metric("forced_model_outcomes_total", variant="churn-v3", outcome="success") == 5


@pytest.mark.integration
def test_huge_request_ids_leave_no_trace_in_memory(start_gateway) -> None:
    """The probe: 212 requests with a 50 KB x-request-id grew the gateway by 12 MB for good."""
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    for index in range(212):
        response = gateway.predict(f"u{index}", headers={"x-request-id": f"{index}-" + "x" * 50_000})
        assert response.status_code == 200 and len(response.headers["x-request-id"]) == 32
        assert len(response.headers["x-mlrollouts-token"]) < 400
        assert gateway.feedback(response.headers["x-mlrollouts-token"], reward=1).status_code == 200
    assert gateway.metric("model_outcomes_total", outcome="success") == 212
    assert gateway.metric("ab_test_feedback_replay_cache_bytes") <= 212 * 250  # a nonce each, not 50 KB


@pytest.mark.parametrize("key", ["k" * 32, "k" * 64, "k" * 100])  # shorter than, equal to, longer than a block
def test_tokens_carry_standard_hmac_sha256_so_replicas_of_other_versions_verify_them(key: str) -> None:
    """A rolling upgrade mixes gateway versions: a token's signature must stay HMAC-SHA256 as RFC 2104
    defines it, whatever shortcut computes it."""
    signer = TokenSigner(KeyRing(env_value=key), "churn-exp", 60)
    payload, _, signature = signer.issue("churn-v3", "build7", "req-1", forced=False).partition(".")
    expected = hmac.digest(key.encode(), tokens.DOMAIN + payload.encode(), "sha256")
    assert base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)) == expected
    signed_elsewhere = payload + "." + base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    assert signer.verify(signed_elsewhere).request_id == "req-1"

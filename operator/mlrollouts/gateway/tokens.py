"""Signed assignment tokens: proof that this gateway served `variant` for `request_id`, until `expires`.

Every response carries one (header `x-mlrollouts-token`); `/feedback` counts an outcome only with a valid
one, so a client cannot report outcomes for requests that never happened or for a variant of its choosing.

The claims: experiment, variant, model version, request id, expiry, forced, a random nonce that makes
each token unique (the replay cache keys on it, so reusing a victim's x-request-id binds nothing), and the
issuing replica: its --advertise-address (if set) and a random id of its process. Only that process counts
the outcome (ownership.py), so replicas sharing the key cannot each count one token once.
Tokens signed before the issuer claims existed have neither; they verify, and ownership.py decides.
Format: `base64url(claims JSON) "." base64url(HMAC-SHA256(key, "mlrollouts-token-v1." + first part))`.

Keys come from a file (a mounted Secret, one key per line) and/or an environment variable. Rotation
without downtime: the first key signs, every key verifies. Add the new key on the second line, wait until
every replica has it, move it first, and drop the old one after the token lifetime has passed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlrollouts.gateway.entropy import RANDOM_HEX

log = logging.getLogger(__name__)

DOMAIN = b"mlrollouts-token-v1."
MIN_KEY_BYTES = 32
MAX_TOKEN_CHARS = 1024
KEYS_ENV = "MLROLLOUTS_GATEWAY_SIGNING_KEYS"
RELOAD_SECONDS = 1.0
MAX_QUOTED = 256


class SigningKeyError(ValueError):
    """Unusable signing keys; the message names the source and the fix."""


class TokenError(ValueError):
    """A token that proves nothing; the message says why (never which key was tried)."""


def parse_keys(text: str, source: str) -> tuple[bytes, ...]:
    """One key per line; blank lines and `#` comments ignored; each key at least 32 bytes."""
    keys = tuple(
        line.strip().encode() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")
    )
    for index, key in enumerate(keys, start=1):
        if len(key) < MIN_KEY_BYTES:
            raise SigningKeyError(
                f"{source}: key {index} has {len(key)} bytes; use at least {MIN_KEY_BYTES} "
                "(e.g. `openssl rand -hex 32`)"
            )
    return keys


class KeyRing:
    """Signing keys, the file re-read when it changes (kubelet swaps a mounted Secret in place)."""

    def __init__(self, path: Path | None = None, env_value: str | None = None) -> None:
        self.path = path
        self.env_keys = parse_keys(env_value.replace(",", "\n"), KEYS_ENV) if env_value else ()
        self._file_keys: tuple[bytes, ...] = ()
        self._signature: tuple[int, int] | None = None
        self._rejected: tuple[int, int] | None = None
        self._checked = -math.inf
        self._generated: tuple[bytes, ...] = ()
        self._keys = self.env_keys  # file, environment, generated: rebuilt only when one of them changes
        if path is not None:
            self._reload(strict=True)
        if not self.current():
            self._generated = (secrets.token_hex(32).encode(),)
            self._keys = self._generated
            log.warning(
                "no signing key given (--signing-key-file or %s): generated one for this process; "
                "feedback tokens will not verify on other replicas or after a restart",
                KEYS_ENV,
            )

    @classmethod
    def from_environment(cls, path: Path | None) -> KeyRing:
        return cls(path, os.environ.get(KEYS_ENV) or None)

    def _reload(self, strict: bool) -> None:
        assert self.path is not None
        signature = None
        try:
            stat = self.path.stat()
            signature = (stat.st_mtime_ns, stat.st_size)
            if signature in (self._signature, self._rejected):
                return
            keys = parse_keys(self.path.read_text(encoding="utf-8"), str(self.path))
            if not keys:
                raise SigningKeyError(f"{self.path}: no key in the file")
        except (OSError, UnicodeDecodeError, SigningKeyError) as problem:
            if strict:
                raise SigningKeyError(str(problem)) from problem
            self._rejected = signature  # warn once per bad version of the file, not every second
            log.warning("signing keys not reloaded, keeping the previous ones: problem=%r", str(problem))
            return
        if self._signature is not None:
            log.info("signing keys reloaded from %s: %d key(s)", self.path, len(keys))
        self._file_keys, self._signature = keys, signature
        self._keys = self._file_keys + self.env_keys + self._generated

    def current(self) -> tuple[bytes, ...]:
        """The file's keys (first signs), then the environment's, then a generated one if none."""
        if self.path is not None:
            now = time.monotonic()
            if now - self._checked >= RELOAD_SECONDS:
                self._checked = now
                self._reload(strict=False)
        return self._keys


@dataclass(frozen=True)
class Claims:
    experiment: str
    variant: str
    model_version: str
    request_id: str
    expires: int
    forced: bool
    nonce: str
    """Unique per response: what the replay cache keys on (a client chooses its x-request-id)."""
    issuer: str | None = None
    """--advertise-address of the issuing replica; None when it advertised none."""
    instance: str | None = None
    """Random id of the issuing gateway process; None in tokens of the format before it existed."""


def _json_string(text: str) -> str:
    """`text` as a JSON string: quoted as it is when nothing needs escaping (ids, versions), else json.dumps."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """base64url without padding; binascii directly (base64.urlsafe_b64encode is two Python calls more)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


@functools.lru_cache(maxsize=16)
def _pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after HMAC's inner key block and DOMAIN, and after the outer key block (RFC 2104),
    computed once per key."""
    if len(key) > 64:  # SHA-256's block size
        key = hashlib.sha256(key).digest()
    block = key.ljust(64, b"\0")
    inner = hashlib.sha256(block.translate(_IPAD))
    inner.update(DOMAIN)  # every token's MAC starts with it
    return inner, hashlib.sha256(block.translate(_OPAD))


def _mac(key: bytes, payload: str) -> bytes:
    """HMAC-SHA256(key, DOMAIN + payload), from the per-key states: hmac.digest set up the key and looked
    up the digest on every call, twice the cost (a token per prediction). Same bytes as hmac.digest."""
    inner_pad, outer_pad = _pads(key)
    inner = inner_pad.copy()
    inner.update(payload.encode("ascii"))
    outer = outer_pad.copy()
    outer.update(inner.digest())
    return outer.digest()


class TokenSigner:
    def __init__(
        self,
        ring: KeyRing,
        experiment: str,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
        issuer: str | None = None,
        instance: str | None = None,
    ) -> None:
        self.ring = ring
        self.experiment = experiment
        self.ttl = ttl_seconds
        self.clock = clock
        self.issuer = issuer
        self.instance = instance if instance is not None else secrets.token_hex(8)
        # the claims this process puts in every token, as JSON text once (one token per prediction)
        self._head = '{"x":' + json.dumps(experiment)
        self._quoted: dict[str, str] = {}  # variants and model versions: a few, each quoted once
        self._tail = (
            ',"p":' + json.dumps(self.instance) + ("" if issuer is None else ',"a":' + json.dumps(issuer)) + "}"
        )

    def issue(self, variant: str, model_version: str, request_id: str, forced: bool) -> str:
        """The signed claims (JSON keys x, v, m, r, e, f, n, p and, with an issuer, a), written out directly:
        json.dumps of a fresh dict per prediction was a tenth of the gateway's own CPU."""
        expires = math.ceil(self.clock() + self.ttl)
        quoted = self._quoted
        v, m = quoted.get(variant), quoted.get(model_version)
        if v is None or m is None:
            if len(quoted) >= MAX_QUOTED:  # model versions are bounded upstream (ModelVersions); be safe anyway
                quoted.clear()
            v = quoted[variant] = _json_string(variant)
            m = quoted[model_version] = _json_string(model_version)
        text = (
            f'{self._head},"v":{v},"m":{m},'
            f'"r":{_json_string(request_id)},"e":{expires},"f":{"true" if forced else "false"},'
            f'"n":"{RANDOM_HEX.hex(12)}"{self._tail}'
        )
        payload = _b64(text.encode())
        return f"{payload}.{_b64(_mac(self.ring.current()[0], payload))}"

    def verify(self, token: object) -> Claims:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise TokenError("token must be the x-mlrollouts-token header of the response, unchanged")
        payload, _, signature = token.partition(".")
        try:
            given = _unb64(signature)
        except (binascii.Error, ValueError):
            raise TokenError("token is malformed") from None
        if not any(hmac.compare_digest(_mac(key, payload), given) for key in self.ring.current()):
            raise TokenError("token signature is not valid")
        claims = json.loads(_unb64(payload))  # signed by a key of ours, so well-formed
        if claims["x"] != self.experiment:
            raise TokenError(f"token belongs to experiment {claims['x']!r}, not {self.experiment!r}")
        if claims["e"] < self.clock():
            raise TokenError("token has expired (--feedback-ttl)")
        return Claims(
            claims["x"],
            claims["v"],
            claims["m"],
            claims["r"],
            int(claims["e"]),
            bool(claims["f"]),
            claims["n"],
            claims.get("a"),
            claims.get("p"),
        )

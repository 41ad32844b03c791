"""Credentials of an experiment's Prometheus (bearer token, CA bundle, timeout) from its spec and Secrets.

The controller passes `read_secret(namespace, name, key) -> bytes`, so this module needs no Kubernetes
client; it must raise SecretNotFound / SecretKeyNotFound (both LookupError) for what is missing. A missing
Secret is reported as MetricsConfigError (a MetricsUnavailable) naming the field: the experiment holds like
any other metrics outage, and creating the Secret heals it on the next tick without editing the spec.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlrollouts.api import ModelExperiment, parse_duration
from mlrollouts.api.spec import SecretKeyRef
from mlrollouts.metrics.base import MetricsUnavailable

ReadSecret = Callable[[str, str, str], bytes]

_CA_DIRECTORY: Path | None = None


class SecretNotFound(LookupError):
    """The Secret itself does not exist (or cannot be read)."""


class SecretKeyNotFound(LookupError):
    """The Secret exists but has no such key."""


class SecretMissing(Exception):
    """A Secret (or a key of one) the experiment references does not exist yet.

    Not an invalid spec: like a Pod waiting for the Secret it mounts, the experiment waits (Pending before the
    start, else Ready=False, with `reason`), moves no traffic, and is checked again every retry interval, so
    creating the Secret resumes it without an edit. A Secret the platform does not allow stays Invalid.
    """

    def __init__(self, field: str, message: str, reason: str = "SecretNotFound") -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {message}")


class MetricsConfigError(MetricsUnavailable):
    """The provider cannot be built as configured; `field` is the spec path to fix."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Connection:
    address: str
    token: str | None
    ca_file: str | None
    timeout_seconds: float


def connection_for(experiment: ModelExperiment, read_secret: ReadSecret, address: str | None = None) -> Connection:
    """Address (the platform's default when given), bearer token, CA bundle file and timeout of the spec."""
    settings = experiment.spec.analysis.prometheus
    namespace = experiment.metadata.namespace
    base = "spec.analysis.prometheus"
    token = None
    if settings.bearer_token_secret_ref is not None:
        field = f"{base}.bearerTokenSecretRef"
        raw = _read(read_secret, namespace, settings.bearer_token_secret_ref, field)
        token = _decode_token(raw, settings.bearer_token_secret_ref, namespace, field)
    ca_file = None
    if settings.ca_secret_ref is not None:
        field = f"{base}.caSecretRef"
        pem = _read(read_secret, namespace, settings.ca_secret_ref, field)
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            ref = settings.ca_secret_ref
            raise MetricsConfigError(
                field, f'key "{ref.key}" of secret {namespace}/{ref.name} is not a PEM certificate bundle'
            )
        ca_file = str(_ca_file(pem))
    timeout = parse_duration(settings.timeout).total_seconds()
    return Connection(address or settings.address, token, ca_file, timeout)


def _read(read_secret: ReadSecret, namespace: str, ref: SecretKeyRef, field: str) -> bytes:
    try:
        return read_secret(namespace, ref.name, ref.key)
    except SecretKeyNotFound:
        raise MetricsConfigError(field, f'secret {namespace}/{ref.name} has no key "{ref.key}"') from None
    except LookupError as error:
        detail = f" ({error})" if str(error) else ""
        raise MetricsConfigError(
            field, f"secret {namespace}/{ref.name} not found{detail}: create it or fix the name"
        ) from None


def _decode_token(raw: bytes, ref: SecretKeyRef, namespace: str, field: str) -> str:
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or any(c in token for c in "\r\n") or not token.isprintable():
        raise MetricsConfigError(
            field, f'key "{ref.key}" of secret {namespace}/{ref.name} is not a printable one-line bearer token'
        )
    return token


def _ca_file(pem: bytes) -> Path:
    """Write the bundle once per content: providers built every tick reuse the same file."""
    global _CA_DIRECTORY
    if _CA_DIRECTORY is None:
        _CA_DIRECTORY = Path(tempfile.mkdtemp(prefix="mlrollouts-ca-"))
    path = _CA_DIRECTORY / f"{hashlib.sha256(pem).hexdigest()[:32]}.pem"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(pem)
        partial.replace(path)
    return path

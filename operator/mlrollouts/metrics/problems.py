"""Sentences for a failed Prometheus query: classified causes, never a server's own bytes (they reach status)."""

from __future__ import annotations

import logging
import ssl

log = logging.getLogger(__name__)


def http_problem(status_code: int, body: str, address: str) -> tuple[str, bool]:
    """A classified sentence for a non-200 answer; auth failures are shared (the same for every query).

    The body never reaches the sentence (it ends up in status, readable by the experiment's author): whatever
    answers at the address wrote it, and an address pointed at an internal service would otherwise read that
    service's error pages back through the operator. Prometheus's own errorType (bad_data, ...) is kept, and an
    excerpt of the body goes to the operator's log for the platform team.
    """
    status = str(status_code)
    error_type = _error_type(body)
    log.warning("prometheus=%s http_status=%s body=%r", address, status, body[:300])
    kind = f" {error_type}" if error_type else ""
    if status in ("401", "403"):
        return (
            f"HTTP {status} from Prometheus at {address}: credentials refused, "
            "check spec.analysis.prometheus.bearerTokenSecretRef",
            True,
        )
    if status in ("400", "422"):
        return (
            f"bad query (HTTP {status}{kind} from Prometheus at {address}): "
            "check its PromQL with `mlrollouts validate` or in the Prometheus UI",
            False,
        )
    return f"HTTP {status}{kind} from Prometheus at {address}", False


_ERROR_TYPES = ("bad_data", "timeout", "canceled", "execution", "internal", "unavailable", "not_found")


def _error_type(text: str) -> str | None:
    """Prometheus's `errorType`, only when it is one of the API's documented values."""
    for error_type in _ERROR_TYPES:
        if f'"errorType":"{error_type}"' in text.replace(" ", ""):
            return error_type
    return None


_CAUSES = {
    "Connection refused": "connection refused",
    "ConnectionRefusedError": "connection refused",
    "Name or service not known": "name or service not known",
    "Temporary failure in name resolution": "name resolution failed",
    "No route to host": "no route to host",
    "timed out": "timed out",
    "Connection reset": "connection reset",
    "RemoteDisconnected": "connection closed without a response",
    "Connection aborted": "connection closed without a response",
    "Server disconnected": "connection closed without a response",
}


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and seen not in chain and len(chain) < 8:
        chain.append(seen)
        # aiohttp keeps the OS error as `os_error`, httpx and requests as the cause
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return chain


def is_tls_failure(error: BaseException) -> bool:
    """httpx wraps the ssl module's error in a ConnectError: look down the cause chain."""
    return any(isinstance(e, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(e) for e in _chain(error))


def root_cause(error: BaseException) -> str:
    """A short classified reason ("connection refused"), never the exception's free text (URLs, server bytes)."""
    text = " | ".join(f"{type(e).__name__}: {e}" for e in _chain(error))
    if "CERTIFICATE_VERIFY_FAILED" in text or is_tls_failure(error):
        return "TLS certificate verification failed: check spec.analysis.prometheus.caSecretRef"
    for marker, cause in _CAUSES.items():
        if marker in text:
            return cause
    log.warning("prometheus request failed: %r", text[:300])
    return type(error).__name__

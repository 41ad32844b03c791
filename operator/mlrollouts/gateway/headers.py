"""Which headers cross the gateway: end-to-end ones only, byte for byte (RFC 9110 §7.6.1).

Headers travel as raw (name, value) byte pairs: repeated headers such as Set-Cookie stay separate, and a
non-ASCII value is passed on as the client sent it instead of failing to encode.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# The gateway's own headers: a client or a model cannot set them, the gateway does.
GATEWAY_OWNED = frozenset({b"x-request-id", b"x-mlrollouts-variant", b"x-mlrollouts-token", b"x-mlrollouts-fallback"})
# httpx sets Host and Content-Length for what it sends; Accept-Encoding is left to httpx so that it can
# decode whatever the model answers (the response goes out decoded, without Content-Encoding).
REQUEST_DROP = frozenset({b"host", b"content-length", b"accept-encoding"}) | GATEWAY_OWNED
# The gateway's server adds exactly one Date; the model's Server is not advertised to the internet.
RESPONSE_DROP = frozenset({b"content-length", b"content-encoding", b"date", b"server"}) | GATEWAY_OWNED


def connection_named(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names listed in Connection: hop-by-hop for this one connection."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return frozenset(named)


@functools.lru_cache(maxsize=8)
def _excluded(drop: frozenset[bytes]) -> frozenset[bytes]:
    return HOP_BY_HOP | drop


def end_to_end(headers: Sequence[tuple[bytes, bytes]], drop: frozenset[bytes] = frozenset()) -> RawHeaders:
    """`headers` without hop-by-hop ones, those named in Connection, and `drop` (lower-case names).

    One pass (two per prediction): a Connection header, rare, takes a second one for the names it lists."""
    excluded = _excluded(drop)
    kept: RawHeaders = []
    listed = False
    for name, value in headers:
        name = name.lower()
        if name not in excluded:
            kept.append((name, value))
        elif name == b"connection":
            listed = True
    if listed:
        named = connection_named(headers)
        return [pair for pair in kept if pair[0] not in named]
    return kept

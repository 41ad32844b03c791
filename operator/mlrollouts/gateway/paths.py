"""The path a request takes upstream: percent-decoded once, dot segments resolved, kept under the prefix.

A model behind `--path-prefix /api` must never see `/admin`, however the client spells it
(`/api/../admin`, `/api/%2e%2e/admin`, `/api/..%2fadmin`). Encoded slashes and backslashes are refused
outright: decoding them would change which segments the path has, and servers disagree on how.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

# RFC 3986 pchar minus "%": a decoded "%" goes out as "%25", so the model decodes exactly once.
PATH_SAFE = "/:@!$&'()*+,;=-._~"
MAX_PATH_BYTES = 8 * 1024
# Segments of unreserved characters without dots: nothing to decode, resolve or encode (the usual /predict).
PLAIN_PATH = re.compile(rb"(?:/[A-Za-z0-9_~-]+)+/?")


class PathRefused(ValueError):
    """A path the gateway will not forward; the message says why."""


def upstream_path(raw_path: bytes, prefix: str | None) -> str:
    """The normalised, re-encoded path to send upstream, or PathRefused."""
    if len(raw_path) > MAX_PATH_BYTES:
        raise PathRefused(f"path is longer than {MAX_PATH_BYTES} bytes")
    if PLAIN_PATH.fullmatch(raw_path):
        return _under_prefix(raw_path.decode("ascii"), prefix)
    lowered = raw_path.lower()
    if b"%2f" in lowered or b"%5c" in lowered or b"\\" in raw_path:
        raise PathRefused("path contains an encoded slash or a backslash")
    try:
        decoded = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused("path is not UTF-8 once percent-decoded") from None
    if not decoded.startswith("/") or any(ord(char) < 0x20 or char == "\x7f" for char in decoded):
        raise PathRefused("path must start with / and contain no control characters")
    segments: list[str] = []
    parts = decoded.split("/")[1:]
    for segment in parts:
        if segment == "..":
            if not segments:
                raise PathRefused("path climbs above the root")
            segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    trailing = parts[-1] in ("", ".", "..") and bool(segments)
    normalised = "/" + "/".join(segments) + ("/" if trailing else "")
    return quote(_under_prefix(normalised, prefix), safe=PATH_SAFE)


def _under_prefix(normalised: str, prefix: str | None) -> str:
    if prefix is not None:
        base = prefix.rstrip("/")
        if normalised != base and not normalised.startswith(base + "/"):
            raise PathRefused(f"path leaves {base}")
    return normalised

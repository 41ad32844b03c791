"""Reading what a client sent: bounded JSON bodies, safe request ids, 4xx answers that name the problem."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive

from mlrollouts.gateway.entropy import RANDOM_HEX

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nobody is left to answer."""


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def request_id(headers: Mapping[str, str]) -> str:
    """The client's x-request-id when it is 1-128 of [A-Za-z0-9._:-], else 32 fresh random hex digits."""
    given = headers.get("x-request-id")
    return given if given is not None and REQUEST_ID.fullmatch(given) else RANDOM_HEX.hex(16)


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs (names lower case) as a dict; the first of repeated names wins, as in Starlette."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(raw)}


def loads(data: bytes) -> Any:
    """json.loads for bytes, with the usual UTF-8 body decoded here: json.loads(bytes) first sniffs for
    UTF-16/32 (detect_encoding), which made a small prediction's parse cost twice as much. JSON in UTF-8
    starts with two non-NUL ASCII bytes; anything else (UTF-16/32, a BOM) takes json.loads' own path, so
    every encoding it read is still read, and fails as it failed."""
    if len(data) > 1 and 0 < data[0] < 0x80 and data[1]:
        return json.loads(data.decode("utf-8", "surrogatepass"))
    return json.loads(data)


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest(400, "request body is empty; send a JSON object")
    try:
        return loads(body)
    except RecursionError:  # the C decoder's own depth guard
        raise BadRequest(400, "request body nests too deeply to be a prediction request") from None
    except ValueError as problem:
        raise BadRequest(400, f"request body is not valid JSON: {str(problem)[:200]}") from None


async def collect_body(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it declares or grows beyond `limit` bytes."""
    _refuse_declared(declared, limit)
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            _refuse_grown(limit)
        parts.append(chunk)
    return b"".join(parts)


def checked_body(body: bytes, declared: str | None, limit: int) -> bytes:
    """A body already read whole (shortcut.py), refused exactly as collect_body refuses it."""
    _refuse_declared(declared, limit)
    if len(body) > limit:
        _refuse_grown(limit)
    return body


def _refuse_declared(declared: str | None, limit: int) -> None:
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"request body is {declared} bytes; the limit is {limit} (--max-body-bytes)")


def _refuse_grown(limit: int) -> None:
    raise BadRequest(413, f"request body exceeds the limit of {limit} bytes (--max-body-bytes)")


async def read_json_body(request: Request, limit: int) -> tuple[bytes, Any]:
    body = await collect_body(request.stream(), request.headers.get("content-length"), limit)
    return body, parse_json(body)


async def asgi_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body straight from the ASGI server, without a Starlette Request around it."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return

"""The prediction path as a raw ASGI app, and the public app that sends predictions to it directly.

Profiled at 32 in flight (py-spy, benchmarks/results/gateway.md), Starlette's middleware stack, routing,
Request and Response objects cost a sizeable share of the gateway's CPU per prediction. Predictions skip
them: `PublicApp` hands POST /predict (and the --path-prefix routes) to `Predict` at once, and everything
else (feedback, health, 404/405 answers, lifespan) to the Starlette app, which routes the same paths to
the same `Predict`, so a request the shortcut does not take is answered exactly as if it had. Served by
protocol.GatewayHttpProtocol, the requests `takes` accepts go one step further, past ASGI altogether
(shortcut.py); `Predict` serves them where that is off (trace logging, an access log, another server).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from mlrollouts.gateway.headers import RawHeaders
from mlrollouts.gateway.inbound import ClientGone

if TYPE_CHECKING:
    from mlrollouts.gateway.app import Gateway

PREFIX_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass(slots=True)  # not frozen: built per prediction, and a frozen __init__ costs 2.5x
class Reply:
    status: int
    headers: RawHeaders
    body: bytes


def reply(status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> Reply:
    """Framed by Content-Length, except where HTTP forbids one (1xx, 204; 304 as Starlette does)."""
    if status < 200 or status in (204, 304):
        return Reply(status, list(headers), b"")
    return Reply(status, [(b"content-length", str(len(body)).encode()), *headers], body)


def error_reply(
    status: int, message: str, headers: dict[str, str] | None = None, raw: Iterable[tuple[bytes, bytes]] = ()
) -> Reply:
    """What inbound.error's JSONResponse sends, byte for byte, without building one; `raw` after `headers`."""
    body = json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":")).encode()
    extra = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    return reply(status, body, [*extra, *raw, (b"content-type", b"application/json")])


class Predict:
    """ASGI app for predictions: Gateway.forward's reply, in two sends."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            answer = await self.gateway.forward(scope, receive)
        except ClientGone:
            return
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})


class PublicApp:
    """Predictions straight to Predict; the rest to `rest` (the Starlette app, lifespan included)."""

    def __init__(self, gateway: Gateway, rest: ASGIApp, prefix: str | None) -> None:
        self.gateway, self.predict, self.rest = gateway, Predict(gateway), rest
        self.prefix = prefix.rstrip("/") if prefix else None

    def takes(self, scope: Scope) -> bool:
        if scope["type"] != "http":
            return False
        path, method = scope["path"], scope["method"]
        if path == "/predict" and method == "POST":
            return True
        prefix = self.prefix
        return prefix is not None and method in PREFIX_METHODS and (path == prefix or path.startswith(prefix + "/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.takes(scope):
            await self.predict(scope, receive, send)
        else:
            await self.rest(scope, receive, send)

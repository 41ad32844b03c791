"""Predictions answered by the gateway's HTTP protocol itself, past uvicorn's ASGI request cycle.

At 32 in flight the ASGI layer around a prediction (the app chain, two send messages, uvicorn's header
checks and head building, the receive event and body iterator) was about a sixth of the gateway's CPU
per prediction (py-spy, benchmarks/results/gateway.md). For the requests `PublicApp.takes` (POST /predict
and the --path-prefix routes) on the public port, protocol.GatewayHttpProtocol runs `serve_prediction`
instead of uvicorn's `RequestResponseCycle.run_asgi`: the same cycle object, so keep-alive, pipelining,
flow control, shutdown and disconnects are uvicorn's own bookkeeping; a body that arrived whole with the
head is taken as it is (else, and with Expect: 100-continue, uvicorn's `receive`); and the answer leaves
as the very bytes uvicorn's `send` would write, in one write. Anything unusual (no Content-Length, a
header uvicorn would refuse) goes through uvicorn's `send` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import HEADER_RE, STATUS_LINE, RequestResponseCycle

from mlrollouts.gateway.headers import RawHeaders
from mlrollouts.gateway.inbound import ClientGone
from mlrollouts.gateway.predict import Reply

if TYPE_CHECKING:
    from mlrollouts.gateway.app import Gateway
    from mlrollouts.gateway.protocol import OneWrite

# uvicorn's HEADER_VALUE_RE ([\x00-\x08\x0a-\x1f\x7f]) as a deletion table: what survives is refused.
VALUE_OK = bytes(byte for byte in range(256) if not (byte <= 0x08 or 0x0A <= byte <= 0x1F or byte == 0x7F))
MAX_NAMES = 256
_names_ok: set[bytes] = set()  # lower-case names uvicorn's HEADER_RE accepts: a few, checked once each


def encode(reply: Reply, default_headers: RawHeaders, keep_alive: bool) -> bytes | None:
    """The bytes RequestResponseCycle.send writes for `reply` (its head, then the body) on a request that
    is not HEAD, or None where that takes more than this (no Content-Length first, or a header name
    uvicorn would refuse or treat apart, a value it refuses): `send` then does all of it itself.
    `reply()` puts Content-Length first for every status that has one, matching the body's length."""
    status = reply.status
    if status < 200 or status in (204, 304):
        return None
    parts = [STATUS_LINE[status]]
    values = []
    names_ok = _names_ok
    for name, value in (*default_headers, *reply.headers):
        if name not in names_ok and not _good_name(name):
            return None
        parts += (name, b": ", value, b"\r\n")
        values.append(value)
    if b"\t".join(values).translate(None, VALUE_OK):
        return None
    if reply.headers[0][0] != b"content-length":
        return None
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", reply.body)
    return b"".join(parts)


def _good_name(name: bytes) -> bool:
    if name != name.lower() or HEADER_RE.search(name) or name in (b"transfer-encoding", b"connection"):
        return False
    if len(_names_ok) >= MAX_NAMES:  # a model inventing names per answer: stay small, check again
        _names_ok.clear()
    _names_ok.add(name)
    return True


async def serve_prediction(cycle: RequestResponseCycle, gateway: Gateway, transport: OneWrite) -> None:
    """What `cycle.run_asgi(PublicApp)` does for a prediction, without ASGI messages in between."""
    try:
        body = None
        if not (cycle.more_body or cycle.disconnected or cycle.waiting_for_100_continue):
            body, cycle.body = bytes(cycle.body), bytearray()  # receive() would hand over the same bytes
            cycle.flow.resume_reading()
        try:
            answer = await gateway.forward(cycle.scope, cycle.receive, body)
        except ClientGone:
            return
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if cycle.disconnected:
            return
        data = encode(answer, cycle.default_headers, cycle.keep_alive)
        if data is None:
            await cycle.send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
            await cycle.send({"type": "http.response.body", "body": answer.body})
            return
        cycle.response_started = cycle.response_complete = True
        cycle.waiting_for_100_continue = False
        transport.write_now(data)
        cycle.message_event.set()
        if not cycle.keep_alive:
            transport.close()
        cycle.on_response()
    except BaseException as exc:  # as run_asgi: logged, a 500 if nothing was sent yet, else the connection closed
        cycle.logger.error("Exception in ASGI application\n", exc_info=exc)
        if not cycle.response_started:
            await cycle.send_500_response()
        else:
            cycle.transport.close()
    finally:
        cycle.on_response = lambda: None

"""What the gateway's server adds under uvicorn: one write per response, ids and nonces never repeated."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from mlrollouts.gateway import shortcut
from mlrollouts.gateway.entropy import CHUNK, RandomHex
from mlrollouts.gateway.predict import Reply, reply
from mlrollouts.gateway.protocol import OneWrite

DATE = [(b"date", b"Thu, 03 Dec 2026 00:00:00 GMT")]


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


def test_a_responses_head_and_body_leave_in_one_write_in_order() -> None:
    async def scenario() -> RecordingTransport:
        real = RecordingTransport()
        transport = OneWrite(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert real.writes == [] and transport.get_write_buffer_size() > 0
        transport.write(memoryview(b"{}"))
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # alone: goes out when the loop turns
        await asyncio.sleep(0)
        transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        transport.close()  # what is held is sent before the connection closes
        assert transport.get_extra_info("peername") == "extra peername"
        return real

    real = asyncio.run(scenario())
    assert real.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
    assert real.closed


def test_random_ids_are_hex_and_never_handed_out_twice_across_refills_and_threads() -> None:
    source = RandomHex()
    seen: list[str] = []

    def take() -> None:
        seen.extend(source.hex(12) for _ in range(CHUNK // 12 * 3))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(value) == 24 and int(value, 16) >= 0 for value in seen)
    assert len(set(seen)) == len(seen)
    assert len(source.hex(CHUNK + 5)) == 2 * (CHUNK + 5)


def request_cycle(transport: RecordingTransport, keep_alive: bool = True) -> RequestResponseCycle:
    """uvicorn's cycle of a POST whose whole body has arrived, writing to `transport`."""
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
    cycle = RequestResponseCycle(
        scope, transport, FlowControl(transport), logging.getLogger("uvicorn.error"), logging.getLogger("x"),  # type: ignore[arg-type]
        False, DATE, asyncio.Event(), False, keep_alive, lambda: None,
    )  # fmt: skip
    cycle.more_body = False
    return cycle


def test_encode_matches_uvicorns_send_or_leaves_it_to_send() -> None:
    def uvicorns(answer: Reply, keep_alive: bool) -> bytes:
        transport = RecordingTransport()

        async def both() -> None:
            cycle = request_cycle(transport, keep_alive)
            await cycle.send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
            await cycle.send({"type": "http.response.body", "body": answer.body})

        asyncio.run(both())
        return b"".join(transport.writes)

    date = DATE
    usual = reply(200, b'{"prediction":0.5}', [(b"content-type", b"application/json"), (b"x-v", b"caf\xc3\xa9\t1")])
    for answer in (usual, reply(502, b'{"error":"x"}', [(b"x-request-id", b"r")]), reply(418, b"")):
        for keep_alive in (True, False):
            assert shortcut.encode(answer, date, keep_alive) == uvicorns(answer, keep_alive)
    assert shortcut.encode(reply(204, b"", [(b"x-a", b"1")]), date, True) is None
    assert shortcut.encode(reply(200, b"{}", [(b"connection", b"close")]), date, True) is None
    assert shortcut.encode(reply(200, b"{}", [(b"X-Upper", b"1")]), date, True) is None
    bad_value = reply(200, b"{}", [(b"x-a", b"one\x01two")])
    assert shortcut.encode(bad_value, date, True) is None
    with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
        uvicorns(bad_value, True)


class Failing:
    """A gateway whose forward fails as a bug would."""

    async def forward(self, scope: object, receive: object, whole: bytes | None = None) -> Reply:
        raise ValueError(f"bug, body {whole!r}")


def test_a_failing_prediction_is_logged_and_answered_500_as_uvicorn_does() -> None:
    transport, logged = RecordingTransport(), []
    handler = logging.Handler(logging.ERROR)
    handler.emit = logged.append  # type: ignore[method-assign]

    async def scenario() -> None:
        cycle = request_cycle(transport)
        cycle.body = bytearray(b"{}")
        await shortcut.serve_prediction(cycle, Failing(), OneWrite(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
        assert cycle.response_complete

    logger = logging.getLogger("uvicorn.error")  # uvicorn's logging config keeps it from caplog
    logger.addHandler(handler)
    try:
        asyncio.run(scenario())
    finally:
        logger.removeHandler(handler)
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert transport.closed and [str(record.exc_info[1]) for record in logged] == ["bug, body b'{}'"]

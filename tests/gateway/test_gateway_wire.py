"""The gateway's own keep-alive pool to plain-http models, against raw servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Awaitable, Callable

import pytest

from mlrollouts.gateway.upstream import Upstream, UpstreamError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and its Content-Length body; b"" when the client closed the connection."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    return head + (await reader.readexactly(length) if length else b"")


async def call_through_pool(handler: Handler, requests: int) -> tuple[list, list[int]]:
    """`requests` POSTs in a row through one Upstream to a server running `handler` per connection."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await handler(reader, writer, len(connections))
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream = Upstream(f"http://127.0.0.1:{port}", 8)
    answers = []
    try:
        for _ in range(requests):
            try:
                answers.append(await upstream.request("POST", "/predict", [(b"x-user-id", b"u")], b"{}", 5))
            except UpstreamError as error:
                answers.append(error)
    finally:
        await upstream.aclose()
        server.close()
    return answers, connections


OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def test_a_kept_alive_connection_the_model_dropped_is_retried_once_on_a_new_one() -> None:
    async def answer_once_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(OK)  # keep-alive by HTTP/1.1 default...
        await writer.drain()
        await read_request(reader)  # ...but the next request on it is dropped unanswered

    answers, connections = asyncio.run(call_through_pool(answer_once_then_drop, 2))
    assert [answer.status_code for answer in answers] == [200, 200]
    assert len(connections) == 2  # the second request went out again on a new connection


def test_chunked_gzip_and_close_delimited_answers_arrive_whole_and_decoded() -> None:
    document = b'{"prediction": 0.5, "padding": "' + os.urandom(3000).hex().encode() + b'"}'
    packed = gzip.compress(document)
    half = len(packed) // 2

    async def three_framings(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (packed[:half], packed[half:]))
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip\r\n\r\n" + chunks)
        writer.write(b"0\r\n\r\n")
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + document)  # no length: ends at close

    answers, connections = asyncio.run(call_through_pool(three_framings, 3))
    assert [answer.content for answer in answers] == [document, b"{}", document]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert len(connections) == 1


@pytest.mark.parametrize(
    "reply",
    [b"SSH-2.0-OpenSSH_9.2\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}"],
    ids=["not HTTP", "cut short"],
)
def test_a_model_that_does_not_answer_in_http_is_an_upstream_error(reply: bytes) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    answers, _ = asyncio.run(call_through_pool(broken, 1))
    assert isinstance(answers[0], UpstreamError)


def test_what_the_pool_sends_is_one_well_formed_request_with_the_headers_as_given() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        seen.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()

    asyncio.run(call_through_pool(record, 1))
    head, _, rest = seen[0].partition(b"\r\n")
    assert head == b"POST /predict HTTP/1.1"
    assert rest.startswith(b"host: 127.0.0.1:")
    assert rest.endswith(b"\r\nx-user-id: u\r\ncontent-length: 2\r\n\r\n{}")


def test_the_timeout_holds_in_total_for_a_stalled_answer_and_for_a_wait_for_a_slot() -> None:
    """The deadline covers the answer, a slot (one connection, busy) and a new connection; a connection
    whose answer timed out is never reused."""

    async def scenario() -> tuple[list[float], list[str], int]:
        stall = asyncio.Event()
        connections = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)
            while await read_request(reader):
                if not stall.is_set():
                    await asyncio.sleep(10)  # never answers in time
                writer.write(OK)
                await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        upstream = Upstream(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 1)
        elapsed, outcomes = [], []

        async def timed(timeout: float) -> None:
            started = asyncio.get_running_loop().time()
            try:
                outcomes.append(str((await upstream.request("POST", "/p", [], b"{}", timeout)).status_code))
            except TimeoutError:
                outcomes.append("timeout")
            elapsed.append(asyncio.get_running_loop().time() - started)

        try:
            holder = asyncio.create_task(timed(0.6))  # takes the only slot and stalls
            await asyncio.sleep(0.05)
            await timed(0.2)  # waits for the slot: times out first
            await holder
            stall.set()
            await timed(2)  # answered, on a new connection: the timed-out one was closed
        finally:
            await upstream.aclose()
            server.close()
        return elapsed, outcomes, len(connections)

    elapsed, outcomes, connections = asyncio.run(scenario())
    assert outcomes == ["timeout", "timeout", "200"]
    assert 0.15 <= elapsed[0] < 0.5 and 0.55 <= elapsed[1] < 0.9
    assert connections == 2


def test_each_call_on_a_reused_connection_keeps_its_own_deadline() -> None:
    """One connection, one deadline timer re-armed as calls need it: an early timer does not cut a later
    call with a longer timeout short, and a later call with a shorter timeout still times out on time."""

    async def scenario() -> tuple[list[float], list[str], int]:
        delays = [0.0, 0.6, 10.0]  # per request on the one connection: at once, after 0.6 s, never in time
        connections = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)
            while await read_request(reader):
                await asyncio.sleep(delays.pop(0))
                writer.write(OK)
                await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        upstream = Upstream(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 1)
        elapsed, outcomes = [], []
        try:
            for timeout in (0.4, 1.5, 0.2):  # the first call's timer fires during the second call
                started = asyncio.get_running_loop().time()
                try:
                    outcomes.append(str((await upstream.request("POST", "/p", [], b"{}", timeout)).status_code))
                except TimeoutError:
                    outcomes.append("timeout")
                elapsed.append(asyncio.get_running_loop().time() - started)
        finally:
            await upstream.aclose()
            server.close()
        return elapsed, outcomes, len(connections)

    elapsed, outcomes, connections = asyncio.run(scenario())
    assert outcomes == ["200", "200", "timeout"] and connections == 1
    assert 0.55 <= elapsed[1] < 1.2 and 0.15 <= elapsed[2] < 0.5

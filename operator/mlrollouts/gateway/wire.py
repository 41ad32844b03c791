"""A keep-alive HTTP/1.1 pool for plain-http models: one buffer written per request, httptools parsing
the answer (the parser uvicorn already runs for the gateway's own requests).

Why not only aiohttp: on the prediction path its client machinery (request and response objects, header
conversion to str and back, stream readers, timers) cost ~140 µs of CPU per call at 32 in flight, about
a third of the whole gateway's (py-spy, benchmarks/results/gateway.md); this pool costs a fraction. It
does only what the gateway needs: bytes in, bytes out, headers byte for byte, no cookies, no redirects,
no compression asked for. upstream.py keeps aiohttp for https:// models and HEAD requests.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from typing import cast

import httptools

from mlrollouts.gateway.headers import RawHeaders
from mlrollouts.gateway.slots import Slots

Answer = tuple[int, RawHeaders, bytes]  # status, raw header pairs, body


class WireError(Exception):
    """The connection failed or the model did not answer in HTTP/1.1 (the message says how)."""


class StaleConnection(WireError):
    """A kept-alive connection closed before any byte of the answer: almost always the model's idle timeout
    closing it as the request went out, so the request is sent once more on a new connection (as urllib3
    and httpx do); a model that crashes mid-request may thus see it twice."""


class _Connection(asyncio.Protocol):
    """One connection to the model; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[Answer] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = self.timer_at = 0.0  # loop times: the awaited answer's deadline, the timer's
        self.parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: RawHeaders = []
        self.chunks: list[bytes] = []
        self.received = False  # any byte of the current answer
        self.headers_done = False
        self.head_only = False
        self.encoded = False  # a Content-Encoding header came: the body may need decoding

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        # kept: before 3.12 every get_running_loop() is a getpid() syscall
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as problem:
            self._fail(WireError(f"the model's answer is not HTTP/1.1: {problem}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self.waiter is None or self.waiter.done():
            return
        if self.headers_done and not self._framed():  # an answer delimited by closing the connection
            self._complete()
        elif self.received:
            self._fail(WireError(f"the model closed the connection mid-answer ({exc!r})"))
        else:
            self._fail(StaleConnection(f"the model closed the connection ({exc!r})"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if len(name) == 16 and name.lower() == b"content-encoding":  # noted here: no second pass per answer
            self.encoded = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:
            return
        self.headers_done = True
        if self.head_only:  # no body follows, whatever Content-Length says; the parser would wait for one
            self._complete()
            self.close()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # 100 Continue and the like: the answer is still to come
            self.headers = []
            return
        if not self.parser.should_keep_alive():
            self.close()
        self._complete()

    # the pool's side
    def send(self, data: bytes, head_only: bool, deadline: float) -> asyncio.Future[Answer]:
        """The answer's future, failed with TimeoutError if not complete by `deadline`. One timer per
        connection, not one armed and cancelled per call (~1 µs each): fired early (later calls have later
        deadlines), it re-arms for the current call's; a call due before it re-arms it at once."""
        assert self.transport is not None
        self._reset()
        self.head_only = head_only
        self.waiter = self.loop.create_future()
        self.deadline = deadline
        if self.timer is None or deadline < self.timer_at:
            self._arm(deadline)
        self.transport.write(data)
        return self.waiter

    def _arm(self, when: float) -> None:
        self._disarm()
        self.timer, self.timer_at = self.loop.call_at(when, self._due), when

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _due(self) -> None:
        self.timer = None
        if self.waiter is None or self.waiter.done():  # idle: the next call arms it
            return
        if self.loop.time() >= self.deadline:
            self.expire()
        else:
            self._arm(self.deadline)

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def _framed(self) -> bool:
        return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers)

    def _complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.status, self.headers, b"".join(self.chunks)))

    def _fail(self, problem: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(problem)

    def expire(self) -> None:
        """The call's deadline passed with the answer still to come (the pool closes the connection)."""
        self._fail(TimeoutError())


class WirePool:
    """Keep-alive connections to one host: idle ones reused newest first, at most `limit` open at once."""

    def __init__(self, host: str, port: int, authority: bytes, base_path: str, limit: int) -> None:
        self.host, self.port, self.authority, self.base_path = host, port, authority, base_path
        self.idle: deque[_Connection] = deque()
        self.slots = Slots(limit)
        self.loop: asyncio.AbstractEventLoop | None = None  # the pool's, looked up once (see _Connection)

    async def request(
        self, method: str, target: str, headers: RawHeaders, body: bytes, timeout_seconds: float
    ) -> tuple[int, RawHeaders, bytes]:
        """The model's answer as (status, raw headers, decoded body) within `timeout_seconds` in total
        (TimeoutError), or WireError. A request that fails, times out or is cancelled closes its connection.

        The deadline is a timer on the loop for the answer's future (_Connection.send), not an asyncio.timeout
        around the call (its context manager, task lookups and cancel bookkeeping were ~10 % of the gateway's own CPU
        per prediction); waiting for a slot or a new connection, rare, still runs under asyncio.timeout."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        lines = [f"{method} {self.base_path}{target} HTTP/1.1\r\n".encode(), b"host: ", self.authority, b"\r\n"]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: %d\r\n" % len(body))
        lines += (b"\r\n", body)
        data = b"".join(lines)
        if not self.slots.try_take():  # a free slot is taken without waiting
            async with asyncio.timeout_at(deadline):
                await self.slots.take()
        try:
            try:
                return await self._exchange(loop, data, method == "HEAD", deadline)
            except StaleConnection:  # a reused connection the model had closed: once more, on a new one
                return await self._exchange(loop, data, method == "HEAD", deadline, fresh=True)
        finally:
            self.slots.release()

    async def _exchange(
        self, loop: asyncio.AbstractEventLoop, data: bytes, head_only: bool, deadline: float, fresh: bool = False
    ) -> Answer:
        connection, reused = None, False
        while self.idle and not fresh:
            candidate = self.idle.pop()
            if not candidate.closed:
                connection, reused = candidate, True
                break
        if connection is None:
            try:
                async with asyncio.timeout_at(deadline):
                    _, connection = await loop.create_connection(_Connection, self.host, self.port)
            except OSError as problem:  # TimeoutError is one, and stays one
                if isinstance(problem, TimeoutError):
                    raise
                raise WireError(f"cannot connect: {problem!r}") from problem
        if loop.time() >= deadline:
            self.idle.append(connection)
            raise TimeoutError
        answer = connection.send(data, head_only, deadline)
        try:
            status, headers, content = await answer
        except StaleConnection:
            connection.close()
            if reused:
                raise
            raise WireError("the model closed a new connection without answering") from None
        except BaseException:  # failed, timed out or cancelled: the connection is mid-answer, never reuse it
            connection.close()
            raise
        if not connection.closed:
            self.idle.append(connection)
        return status, headers, decoded(headers, content) if connection.encoded else content

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


def decoded(headers: RawHeaders, content: bytes) -> bytes:
    """The body without its Content-Encoding (the gateway drops that header): the pool asks for none, but
    a model may compress anyway."""
    coding = b", ".join(value for name, value in headers if name.lower() == b"content-encoding").strip().lower()
    if coding in (b"", b"identity"):
        return content
    if coding in (b"gzip", b"x-gzip", b"deflate"):
        try:
            return zlib.decompress(content, 47 if coding != b"deflate" else zlib.MAX_WBITS)
        except zlib.error:
            if coding == b"deflate":  # raw deflate, as some servers send it
                try:
                    return zlib.decompress(content, -zlib.MAX_WBITS)
                except zlib.error as problem:
                    raise WireError(f"the model's deflate body does not decode: {problem}") from problem
            raise WireError("the model's gzip body does not decode") from None
    raise WireError(
        f"the model answered in content-encoding {coding.decode('latin-1')!r}, which the gateway cannot decode"
    )

"""A TCP fault proxy on 127.0.0.1: put it between the operator and a server to freeze, cut or break the server.

The API server emulator is a thread of the chaos runner, so it cannot be SIGSTOPped on its own; to the
operator, a proxy that stops moving bytes is indistinguishable from a frozen server, and one that resets
every connection and refuses new ones for a while is what a restarting API server looks like (its state
survives, as etcd's does). For Prometheus the proxy can also answer every request with HTTP 500.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from typing import Literal

Mode = Literal["pass", "freeze", "down", "error"]
ERROR_BODY = b'{"status":"error","errorType":"internal","error":"chaos: injected failure"}'
ERROR_RESPONSE = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(ERROR_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + ERROR_BODY
)


class FaultProxy:
    """Forwards 127.0.0.1:port to an upstream port; `set_mode` switches faults on and off from any thread.

    pass: forward. freeze: hold every byte (open connections stall, new ones are accepted and stall).
    down: reset every open connection and close new ones at once. error: close open connections; new
    ones get one HTTP 500 and are closed.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.mode: Mode = "pass"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(started)), daemon=True)
        self._thread.start()
        self.port = started.result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop and self._stop and self._thread:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def set_mode(self, mode: Mode) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._switch(mode), self._loop).result(timeout=10)

    async def _switch(self, mode: Mode) -> None:
        assert self._flowing is not None
        self.mode = mode
        if mode == "freeze":
            self._flowing.clear()
            return
        self._flowing.set()
        if mode in ("down", "error"):
            for writer in list(self._writers):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            self._writers.clear()

    async def _serve(self, started: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._flowing, self._stop = asyncio.Event(), asyncio.Event()
        self._flowing.set()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        started.set_result(server.sockets[0].getsockname()[1])
        async with server:
            await self._stop.wait()
            for writer in list(self._writers):
                writer.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "down":
            writer.transport.abort()
            return
        if self.mode == "error":
            await self._answer_error(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the proxy is stopping
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(Exception):
            while chunk := await reader.read(65536):
                await self._flowing.wait()  # frozen: the bytes wait here, the peer sees silence
                writer.write(chunk)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.write_eof()

    async def _answer_error(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.write(ERROR_RESPONSE)
            await writer.drain()
        writer.close()

"""uvicorn's httptools protocol, with each response's head and body leaving in one write.

uvicorn writes the head (status line and headers) and the body of a response in two transport.write
calls, and uvloop sends each at once: two syscalls and two TCP segments per prediction, and the client
woken twice (strace at 32 in flight: 3 writes per prediction, one of them to the model). `OneWrite` holds
a head until the body follows, which with a complete body is the very next call, and sends both as one
buffer. Anything held is sent when the loop next turns (a streamed response whose body comes later) or
before the connection closes, so nothing waits longer than one loop iteration and order is kept.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from mlrollouts.gateway.shortcut import serve_prediction

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application

    from mlrollouts.gateway.predict import PublicApp


class OneWrite:
    """A transport that joins a held write with the next one; everything else goes to `transport`."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._transport.write(held + data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def write_now(self, data: bytes) -> None:
        """`data` at once, after anything held (a complete response: nothing follows to join)."""
        held, self._held = self._held, None
        self._transport.write(data if held is None else held + data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, abort, ...
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol writing through `OneWrite`, predictions served by shortcut.py.

    The app (server.ByPort) says per connection whether the shortcut applies: on the public port, with
    nothing wrapped around the app (uvicorn wraps it at trace log level) and no access log to write."""

    shortcut: PublicApp | None = None
    idle_since: float | None = None  # loop time of the last answer while no request is in progress
    keep_alive_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.one_write = OneWrite(transport, self.loop)
        super().connection_made(self.one_write)  # type: ignore[arg-type]
        shortcut_for = getattr(self.app, "shortcut_for", None)
        if shortcut_for is not None and not self.access_log and not getattr(self.config, "reset_contextvars", False):
            self.shortcut = shortcut_for(self.server)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        public = self.shortcut
        if public is None or app is not self.app or not public.takes(cycle.scope):  # app: not uvicorn's 503
            super()._start_asgi_task(cycle, app)
            return
        task = self.loop.create_task(serve_prediction(cycle, public.gateway, self.one_write))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    # Keep-alive: uvicorn arms a timer after every answer and cancels it when the next request arrives,
    # ~1 µs per prediction. Here one timer per connection checks, when due, whether the connection has
    # been idle for the whole timeout since its last answer; if not, it is armed for when it will be.

    def _unset_keepalive_if_required(self) -> None:  # uvicorn calls it as data arrives: busy from now
        self.idle_since = None

    def on_response_complete(self) -> None:
        """uvicorn's (0.54), arming the keep-alive timer only when none is armed."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self.idle_since = now = self.loop.time()
        if self.keep_alive_timer is None:
            self.keep_alive_timer = self.loop.call_at(now + self.timeout_keep_alive, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.keep_alive_timer = None
        if self.idle_since is None:  # busy: the answer arms it again
            return
        due = self.idle_since + self.timeout_keep_alive
        if self.loop.time() >= due:
            self.timeout_keep_alive_handler()
        else:
            self.keep_alive_timer = self.loop.call_at(due, self._keep_alive_due)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.keep_alive_timer is not None:
            self.keep_alive_timer.cancel()
            self.keep_alive_timer = None

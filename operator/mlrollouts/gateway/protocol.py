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
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, abort, ...
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol writing through `OneWrite`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWrite(transport, self.loop))  # type: ignore[arg-type]

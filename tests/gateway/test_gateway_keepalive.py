"""The gateway's server closes a connection idle for --timeout-keep-alive (uvicorn's), and never one that
is busy or was used since (protocol.py arms one timer per connection, not one per answer)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from mlrollouts.gateway.server import bind, uvicorn_config

KEEP_ALIVE_SECONDS = 1


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    sock = bind("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    config = uvicorn_config(app, host, port)
    config.timeout_keep_alive = KEEP_ALIVE_SECONDS
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.01)
    yield host, port
    running.should_exit = True
    thread.join(timeout=10)
    sock.close()


def get(connection: socket.socket, path: str = "/") -> bytes:
    connection.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(b"ok"):
        chunk = connection.recv(4096)
        assert chunk, "closed while a request was in flight"
        answer += chunk
    return answer


def seconds_until_closed(connection: socket.socket) -> float:
    started = time.monotonic()
    connection.settimeout(5)
    assert connection.recv(1) == b""
    return time.monotonic() - started


def test_an_idle_connection_closes_after_the_keep_alive_timeout(server) -> None:
    connection = socket.create_connection(server)
    get(connection)
    assert 0.8 <= seconds_until_closed(connection) < 2.0


def test_a_connection_used_again_or_busy_stays_open_until_idle_for_the_timeout(server) -> None:
    connection = socket.create_connection(server)
    for _ in range(5):  # 2 s in all, never idle for 1 s
        get(connection)
        time.sleep(0.4)
    assert get(connection, "/slow").startswith(b"HTTP/1.1 200")  # in flight across a timer that fires
    assert 0.8 <= seconds_until_closed(connection) < 2.0

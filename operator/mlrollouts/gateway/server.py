"""Running the gateway under uvicorn, in the foreground (`mlrollouts gateway`) or beside a test."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from mlrollouts.gateway.app import create_app
from mlrollouts.gateway.config import GatewayConfig


def uvicorn_config(app: ASGIApp, host: str, port: int, log_level: str = "warning") -> uvicorn.Config:
    # access logs off: one line per prediction would cost more than the proxying itself
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on")


def run_gateway(config: GatewayConfig, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM; uvicorn runs the app's shutdown, which closes every pool."""
    config.validate()
    uvicorn.Server(uvicorn_config(create_app(config), config.host, config.port, log_level)).run()


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` on a free loopback port in a background thread; yields its base URL, stops on exit."""
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on such sockets, and without it
    # every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, host, port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        else:
            raise RuntimeError(f"server on {host}:{port} did not start within 5 s")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

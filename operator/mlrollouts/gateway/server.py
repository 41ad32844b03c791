"""Running the gateway under uvicorn, in the foreground (`mlrollouts gateway`) or beside a test.

One uvicorn server listens on two sockets: the public port and the metrics port. `ByPort` sends each
request to the app of the socket it arrived on, so /metrics is never reachable on the public port.
"""

from __future__ import annotations

import gc
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mlrollouts.gateway.app import create_app
from mlrollouts.gateway.config import GatewayConfig
from mlrollouts.gateway.ownership import INTERNAL_FEEDBACK_PATH
from mlrollouts.gateway.predict import PublicApp
from mlrollouts.gateway.protocol import GatewayHttpProtocol
from mlrollouts.gateway.split_source import SplitSource
from mlrollouts.gateway.tokens import KeyRing


def uvicorn_config(app: ASGIApp, host: str, port: int, log_level: str = "warning") -> uvicorn.Config:
    """uvicorn on uvloop and httptools (named, not left to "auto": without them it would quietly fall back
    to asyncio and h11, several times the CPU per request), writing each response in one syscall and
    answering predictions from the protocol itself (protocol.py, shortcut.py). Access logs off: one line
    per prediction would cost more than the proxying itself. No Server header: the gateway does not
    advertise itself, and drops the model's. No proxy headers: nothing reads the client address, and
    X-Forwarded-* from a client must not rewrite it. No websockets. granian (ASGI and RSGI) was measured
    in its place and spent no less CPU per request (gateway.md)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
        loop="uvloop",
        http=GatewayHttpProtocol,
        ws="none",
        proxy_headers=False,
    )


def metrics_app(public: PublicApp) -> Starlette:
    """The internal side of the gateway behind `public`, for the metrics port only: /metrics, /healthz,
    /readyz with the applied split, and /internal/feedback, where other replicas forward feedback."""
    gateway = public.gateway
    routes = [
        Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", gateway.split_status, methods=["GET"]),
        Route(INTERNAL_FEEDBACK_PATH, gateway.feedback.internal, methods=["POST"]),
    ]
    return Starlette(routes=routes)


class ByPort:
    """One ASGI app for two listening sockets: requests to `metrics_port` go to the metrics app.

    Lifespan events go to the public app, which owns the upstream pools and the split follower."""

    def __init__(self, public: ASGIApp, metrics: ASGIApp, metrics_port: int) -> None:
        self.public, self.metrics, self.metrics_port = public, metrics, metrics_port

    def shortcut_for(self, server: tuple[str, int | None] | None) -> PublicApp | None:
        """The public app whose predictions a connection to `server` may serve past ASGI (protocol.py)."""
        if not isinstance(self.public, PublicApp) or (server is not None and server[1] == self.metrics_port):
            return None
        return self.public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "lifespan" and server is not None and server[1] == self.metrics_port:
            await self.metrics(scope, receive, send)
        else:
            await self.public(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on such sockets, and without it
    # every keep-alive response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def gateway_asgi(
    config: GatewayConfig, metrics_port: int, source: SplitSource | None = None, keys: KeyRing | None = None
) -> ByPort:
    public = create_app(config, source, keys)
    return ByPort(public, metrics_app(public), metrics_port)


GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Keep the cyclic GC off the request path: what exists after start-up (modules, the bucket table) is
    frozen out of every collection, and the young generation is collected every 10,000 net allocations
    instead of 700. Measured at 32 in flight: GC time ~140 µs per request before, ~3 µs after. Garbage in
    cycles still goes, a little later; objects freed by reference counting (nearly all) never wait."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def run_gateway(config: GatewayConfig, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM; uvicorn runs the app's shutdown, which closes every pool."""
    config.validate()
    public_socket, metrics_socket = bind(config.host, config.port), bind(config.host, config.metrics_port)
    app = gateway_asgi(config, metrics_socket.getsockname()[1])
    tune_gc()  # the whole process is the gateway's; tests serving it in a thread leave their GC alone
    server = uvicorn.Server(uvicorn_config(app, config.host, config.port, log_level))
    server.run(sockets=[public_socket, metrics_socket])


@dataclass(frozen=True)
class GatewayUrls:
    public: str
    metrics: str


@contextmanager
def serve_gateway_in_thread(
    config: GatewayConfig, source: SplitSource | None = None, keys: KeyRing | None = None
) -> Iterator[GatewayUrls]:
    """The gateway on two free loopback ports in a background thread (tests, the demo's helpers)."""
    host = "127.0.0.1"
    public_socket, metrics_socket = bind(host, 0), bind(host, 0)
    metrics_port = metrics_socket.getsockname()[1]
    app = gateway_asgi(config, metrics_port, source, keys)
    with _serving(app, [public_socket, metrics_socket]):
        yield GatewayUrls(f"http://{host}:{public_socket.getsockname()[1]}", f"http://{host}:{metrics_port}")


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` on a free loopback port in a background thread; yields its base URL, stops on exit."""
    sock = bind(host, 0)
    with _serving(app, [sock]):
        yield f"http://{host}:{sock.getsockname()[1]}"


@contextmanager
def _serving(app: ASGIApp, sockets: list[socket.socket]) -> Iterator[None]:
    host, port = sockets[0].getsockname()[:2]
    server = uvicorn.Server(uvicorn_config(app, host, port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        else:
            raise RuntimeError(f"server on {host}:{port} did not start within 5 s")
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for sock in sockets:
            sock.close()

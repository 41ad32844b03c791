"""A bearer-token-checking HTTP proxy in front of a real Prometheus, as an auth proxy or a managed service."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx


class ProxyLog:
    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []


@contextmanager
def bearer_proxy(upstream: str, token: str, tls: tuple[Path, Path] | None = None) -> Iterator[tuple[str, ProxyLog]]:
    """Forward GETs to `upstream` only with `Authorization: Bearer <token>`, else 401 (as an auth proxy does).

    With `tls` (certificate, key) it serves HTTPS, as a Prometheus behind a TLS proxy.
    """
    seen = ProxyLog()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.requests.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})
            if self.headers.get("Authorization") != f"Bearer {token}":
                status, body = 401, b"Unauthorized\n"
            else:
                answer = httpx.get(upstream + self.path, timeout=5.0)
                status, body = answer.status_code, answer.content
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

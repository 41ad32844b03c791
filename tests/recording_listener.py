"""A real HTTP listener on loopback that records every request (path, Authorization) and answers as told."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ONE_SAMPLE = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[0,"5"]}]}}'


@dataclass
class Listener:
    url: str = ""
    status: int = 200
    body: bytes = ONE_SAMPLE
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def authorizations(self) -> set[str]:
        return {r["authorization"] for r in self.requests}


@contextmanager
def recording_listener(**answer: Any) -> Iterator[Listener]:
    listener = Listener(**answer)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            listener.requests.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})
            self.send_response(listener.status)
            for name, value in listener.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(listener.body)))
            self.end_headers()
            self.wfile.write(listener.body)

        do_POST = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    listener.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""A real HTTP receiver for webhook gates and notifications: records every POST, answers what the test says."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    at: float
    """time.monotonic() when the request arrived."""
    wall: float = 0.0
    """time.time() when the request arrived (to compare with the body's `time`)."""


@dataclass
class Receiver:
    """POST /anything -> the code set for that path (200 by default); paths in `held` wait for `release`."""

    codes: dict[str, int] = field(default_factory=dict)
    script: dict[str, list[int]] = field(default_factory=dict)
    """Codes answered in turn for a path before falling back to `codes`."""
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    calls: list[Call] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                receiver.calls.append(Call(self.path, body, time.monotonic(), time.time()))
                if self.path in receiver.held:
                    receiver.release.wait(120)
                scripted = receiver.script.get(self.path)
                code = scripted.pop(0) if scripted else receiver.codes.get(self.path, 200)
                self.send_response(code)
                for header, value in receiver.headers.get(self.path, {}).items():
                    self.send_header(header, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def to(self, path: str) -> list[Call]:
        return [call for call in list(self.calls) if call.path == path]

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""The protocol's prediction shortcut (shortcut.py): the same bytes and HTTP/1.1 semantics as uvicorn's
ASGI cycle, on the requests it takes and on none other."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from mlrollouts.gateway import protocol
from mlrollouts.gateway.server import ByPort


class Raw:
    """One TCP connection speaking HTTP/1.1 by hand: pipelining, Expect and half-sent bodies included."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.buffer = b""
        self.last_head = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body framed by Content-Length."""
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.last_head = head
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        headers = {name.lower(): value for name, value in headers.items()}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def closed_by_server(self) -> bool:
        self.sock.settimeout(5)
        return not self.buffer and self.sock.recv(1) == b""

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the gateway")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def post(path: str = "/predict", body: bytes = b'{"x": 1}', extra: str = "", version: str = "1.1") -> bytes:
    head = f"POST {path} HTTP/{version}\r\nhost: gw\r\ncontent-type: application/json\r\n{extra}"
    return head.encode() + b"content-length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
def taken(monkeypatch) -> Iterator[list[str]]:
    """The paths the shortcut served (counted at the protocol, which looks serve_prediction up per request)."""
    paths: list[str] = []
    real = protocol.serve_prediction

    def counting(cycle, gateway, transport):
        paths.append(cycle.scope["path"])
        return real(cycle, gateway, transport)

    monkeypatch.setattr(protocol, "serve_prediction", counting)
    yield paths


def test_the_shortcut_takes_predictions_and_prefix_routes_only(start_gateway, taken) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0}, path_prefix="/v1")
    assert gateway.predict("alice").status_code == 200
    assert gateway.client.post(f"{gateway.url}/v1/score", json={}).status_code == 200
    assert taken == ["/predict", "/v1/score"]
    assert gateway.client.get(f"{gateway.url}/predict").status_code == 405
    assert gateway.client.head(f"{gateway.url}/v1/score").status_code == 200  # HEAD: Starlette's GET route
    assert gateway.client.get(f"{gateway.url}/healthz").text == "ok"
    assert gateway.client.post(f"{gateway.url}/feedback", json={}).status_code == 400
    assert gateway.client.post(f"{gateway.metrics_url}/predict", json={}).status_code == 404  # metrics port
    assert taken == ["/predict", "/v1/score"]


def test_pipelined_requests_are_answered_in_order_on_one_connection(start_gateway, taken) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    raw = Raw(gateway.url)
    first = post(extra="x-request-id: first\r\n")
    health = b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n"
    raw.send(first + health + post(body=b'{"user_id": "bob"}', extra="x-request-id: second\r\n"))
    answers = [raw.answer() for _ in range(3)]
    raw.close()
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert answers[0][1]["x-request-id"] == "first" and answers[2][1]["x-request-id"] == "second"
    assert answers[1][2] == b"ok" and answers[2][1]["x-mlrollouts-variant"] == "churn-v2"
    assert len(taken) == 2


def test_connection_close_and_http_1_0_close_after_the_answer(start_gateway, taken) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    for request in (post(extra="connection: close\r\n"), post(version="1.0")):
        raw = Raw(gateway.url)
        raw.send(request)
        status, headers, body = raw.answer()
        assert status == 200 and headers["connection"] == "close" and b"prediction" in body
        assert raw.closed_by_server()
        raw.close()
    raw = Raw(gateway.url)  # keep-alive by default: a second request on the same connection
    for _ in range(2):
        raw.send(post())
        status, headers, _ = raw.answer()
        assert status == 200 and "connection" not in headers
    raw.close()
    assert len(taken) == 4


def test_expect_100_continue_gets_its_interim_answer_before_the_body_is_sent(start_gateway, models, taken) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    raw = Raw(gateway.url)
    body = b'{"user_id": "carol"}'
    raw.send(b"POST /predict HTTP/1.1\r\nhost: gw\r\nexpect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(body))
    assert raw.answer()[0] == 100
    raw.send(body)
    status, headers, _ = raw.answer()
    raw.close()
    assert status == 200 and headers["x-mlrollouts-variant"] == "churn-v2"
    assert models["churn-v2"][0].received[-1]["body"] == body and taken == ["/predict"]


def test_bodies_over_the_limit_get_413_and_the_connection_serves_on(start_gateway, taken) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0}, max_body_bytes=64)
    raw = Raw(gateway.url)
    raw.send(post(body=b'{"x": "' + b"a" * 100 + b'"}'))
    status, _, declared = raw.answer()
    assert status == 413 and b"bytes; the limit is 64" in declared
    chunked = b"POST /predict HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n"
    raw.send(chunked + b"50\r\n" + b"a" * 80 + b"\r\n0\r\n\r\n")  # no length declared: counted as read
    status, _, grown = raw.answer()
    assert status == 413 and b"exceeds the limit of 64 bytes" in grown
    raw.send(post())
    assert raw.answer()[0] == 200
    raw.close()
    assert len(taken) == 3


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """uvicorn.error's records (uvicorn's own logging config keeps them from pytest's caplog)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_a_client_gone_mid_body_or_mid_call_is_dropped_quietly(start_gateway, models, server_errors) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})
    model = models["churn-v2"][0]
    raw = Raw(gateway.url)
    raw.send(b'POST /predict HTTP/1.1\r\nhost: gw\r\ncontent-length: 100\r\n\r\n{"x": ')  # half a body
    time.sleep(0.1)
    raw.close()
    model.delay_seconds = 0.3
    raw = Raw(gateway.url)
    raw.send(post(body=b'{"user_id": "dave"}'))  # gone while the model thinks
    time.sleep(0.1)
    raw.close()
    time.sleep(0.4)
    model.delay_seconds = 0.0
    assert [each["body"] for each in model.received] == [b'{"user_id": "dave"}']
    assert gateway.predict("erin").status_code == 200 and server_errors == []


def test_the_shortcut_answers_with_the_head_the_asgi_path_writes(start_gateway, monkeypatch) -> None:
    gateway = start_gateway({"churn-v2": 100, "churn-v3": 0})

    def head() -> list[bytes]:
        raw = Raw(gateway.url)
        raw.send(post(extra="x-request-id: same\r\nx-user-id: frank\r\n"))
        status, _, body = raw.answer()
        raw.close()
        lines = raw.last_head.split(b"\r\n")
        assert status == 200 and b'"prediction"' in body
        return [line for line in lines if not line.startswith((b"date: ", b"x-mlrollouts-token: "))]

    shortcut_head = head()
    monkeypatch.setattr(ByPort, "shortcut_for", lambda self, server: None)  # every request through ASGI
    assert head() == shortcut_head
    assert shortcut_head[0] == b"HTTP/1.1 200 OK" and shortcut_head[1].startswith(b"content-length: ")

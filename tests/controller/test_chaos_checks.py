"""The chaos sweep's own parts: the history check catches a doubled or skipped step, and the fault proxy
really freezes, cuts and breaks a server (a chaos run whose faults or checks were no-ops would prove nothing).
"""

from __future__ import annotations

import http.server
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = [10, 20, 35, 50, 100]


@pytest.fixture
def chaos(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(REPO))
    import benchmarks.chaos.invariants
    import benchmarks.chaos.proxy

    return benchmarks.chaos


def _entry(action: str, challenger: int | None = None) -> dict[str, Any]:
    to = f"churn-v2 {100 - challenger}%/churn-v3 {challenger}%" if challenger is not None else "Progressing"
    return {"time": "2026-12-01T00:00:00Z", "action": action, "from": "x", "to": to, "reason": "r"}


def _status(phase: str, challenger: int, *history: dict[str, Any]) -> dict[str, Any]:
    return {"phase": phase, "weights": {"churn-v2": 100 - challenger, "churn-v3": challenger}, "history": list(history)}


def test_a_clean_history_has_no_violation(chaos: Any) -> None:
    status = _status("Progressing", 35, _entry("start"), _entry("advance", 20), _entry("advance", 35))
    assert chaos.invariants.history_violations(status, STEPS) == []
    promoted = _status(
        "Promoted", 100, _entry("start"), *(_entry("advance", w) for w in (20, 35, 50)), _entry("promoted")
    )
    assert chaos.invariants.history_violations(promoted, STEPS) == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (_status("Progressing", 35, _entry("start"), _entry("advance", 20), _entry("advance", 20)), "doubled"),
        (_status("Progressing", 35, _entry("start"), _entry("advance", 35)), "skipped"),
        (_status("Progressing", 10, _entry("start"), _entry("start")), "'start' recorded 2 times"),
        (_status("Progressing", 50, _entry("start"), _entry("advance", 20)), "history says step 20%"),
        (_status("Promoted", 100, _entry("start"), _entry("advance", 20), _entry("promoted")), "promoted after"),
        (_status("RolledBack", 0, _entry("start"), _entry("rolledBack"), _entry("rolledBack")), "end recorded 2"),
    ],
)
def test_a_broken_history_is_a_violation(chaos: Any, status: dict[str, Any], expected: str) -> None:
    problems = chaos.invariants.history_violations(status, STEPS)
    assert any(expected in problem for problem in problems), problems


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_the_proxy_forwards_freezes_cuts_and_breaks(chaos: Any, upstream: int) -> None:
    proxy = chaos.proxy.FaultProxy(upstream).start()
    try:
        assert httpx.get(proxy.url, timeout=30).text == "hello"
        proxy.set_mode("freeze")
        with pytest.raises(httpx.ReadTimeout):  # accepted, then silence: no answer however long one waits
            httpx.get(proxy.url, timeout=httpx.Timeout(30, read=1.0))
        proxy.set_mode("down")
        with pytest.raises(httpx.TransportError):
            httpx.get(proxy.url, timeout=30)
        proxy.set_mode("error")
        response = httpx.get(proxy.url, timeout=30)
        assert response.status_code == 500 and response.json()["status"] == "error"
        proxy.set_mode("pass")
        assert httpx.get(proxy.url, timeout=30).text == "hello"
    finally:
        proxy.stop()

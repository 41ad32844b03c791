"""Readiness (/readyz on its own port): this replica can reach the API server and read its experiments.

Liveness stays kopf's /healthz, which answers as long as the event loop runs: a replica whose API server is
away is alive (restarting it would not help) but not ready. Readiness lists the experiments it watches with
`limit=1`, the same request its watch starts with, so an unreachable API server, a missing CRD or missing RBAC
all show as not ready with the reason in the body. Results are cached briefly so probes cannot load the API.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import aiohttp.web

from mlrollouts import GROUP
from mlrollouts.routing.base import RoutingError

Check = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else a short reason."""


def experiments_path(namespaces: list[str]) -> str:
    """The list request of the first watched namespace (or cluster-wide), one item at most."""
    base = f"/apis/{GROUP}/v1alpha1"
    return (
        f"{base}/namespaces/{namespaces[0]}/modelexperiments?limit=1"
        if namespaces
        else f"{base}/modelexperiments?limit=1"
    )


class Readiness:
    def __init__(self, check: Check, cache_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._check, self._cache_seconds, self._clock = check, cache_seconds, clock
        self._checked_at: float | None = None
        self._reason: str | None = "not checked yet"

    async def reason(self) -> str | None:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._cache_seconds:
            try:
                self._reason = await self._check()
            except Exception as error:  # any failure of the check is a reason, never a 500
                self._reason = f"{type(error).__name__}: {str(error)[:200]}"
            self._checked_at = now
        return self._reason

    async def handle(self, _request: aiohttp.web.Request) -> aiohttp.web.Response:
        reason = await self.reason()
        if reason is None:
            return aiohttp.web.json_response({"ready": True})
        return aiohttp.web.json_response({"ready": False, "reason": reason}, status=503)


async def serve(readiness: Readiness, port: int, host: str = "0.0.0.0") -> aiohttp.web.AppRunner:
    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get("/readyz", readiness.handle)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, host, port).start()
    return runner


def api_check(read_path: Callable[[str], Awaitable[tuple[int, object]]], namespaces: list[str]) -> Check:
    """The readiness check against the API server: list the watched experiments, classify the failure."""
    path = experiments_path(namespaces)

    async def check() -> str | None:
        try:
            status, _ = await read_path(path)
        except RoutingError:
            return "Kubernetes API server unreachable"
        if 200 <= status < 300:
            return None
        if status in (401, 403):
            return f"HTTP {status} listing ModelExperiments: check the operator's ServiceAccount and RBAC"
        if status == 404:
            return "HTTP 404 listing ModelExperiments: is the CRD installed?"
        return f"HTTP {status} from the Kubernetes API server"

    return check

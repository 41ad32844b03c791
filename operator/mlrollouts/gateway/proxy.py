"""Calling a variant's upstream: one pooled client per upstream, and the bookkeeping of each call."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from mlrollouts.gateway.metrics import GatewayMetrics, prediction_bucket
from mlrollouts.gateway.shadow import numeric_score

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)
MAX_SCORED_BODY = 64 * 1024


def make_clients(
    upstreams: Mapping[str, str], timeout_seconds: float, max_connections: int
) -> dict[str, httpx.AsyncClient]:
    """One connection pool per upstream, created once: a client per request costs a TCP handshake each."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return {
        name: httpx.AsyncClient(base_url=url, timeout=timeout_seconds, limits=limits) for name, url in upstreams.items()
    }


def forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in HOP_BY_HOP}


@dataclass(frozen=True)
class Outcome:
    """One upstream call: a response, or the kind of failure ("connect", "timeout", "status_5xx")."""

    variant: str
    model_version: str
    response: httpx.Response | None
    error_kind: str | None
    error_message: str | None = None

    @property
    def failed(self) -> bool:
        return self.error_kind is not None


class Forwarder:
    def __init__(self, experiment: str, clients: Mapping[str, httpx.AsyncClient], metrics: GatewayMetrics) -> None:
        self.experiment = experiment
        self.clients = clients
        self.metrics = metrics

    async def call(self, variant: str, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        started = time.perf_counter()
        try:
            response = await self.clients[variant].request(method, path, headers=dict(headers), content=body)
        except httpx.TimeoutException as error:
            return self._failed(variant, started, "timeout", f"variant {variant} timed out: {error!r}")
        except httpx.HTTPError as error:
            return self._failed(variant, started, "connect", f"variant {variant} unreachable: {error!r}")
        model_version = response.headers.get("x-model-version") or variant
        labels = (self.experiment, variant, model_version)
        self.metrics.requests.labels(*labels).inc()
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        if response.status_code >= 500:
            self.metrics.errors.labels(*labels, "status_5xx").inc()
            return Outcome(variant, model_version, response, "status_5xx", f"variant {variant} answered 5xx")
        self._count_prediction(labels, response)
        return Outcome(variant, model_version, response, None)

    def _failed(self, variant: str, started: float, kind: str, message: str) -> Outcome:
        labels = (self.experiment, variant, variant)
        self.metrics.requests.labels(*labels).inc()
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        self.metrics.errors.labels(*labels, kind).inc()
        return Outcome(variant, variant, None, kind, message)

    def _count_prediction(self, labels: tuple[str, str, str], response: httpx.Response) -> None:
        if "json" not in response.headers.get("content-type", "") or len(response.content) > MAX_SCORED_BODY:
            return
        try:
            score = numeric_score(json.loads(response.content))
        except ValueError:
            return
        if score is not None:
            self.metrics.predictions.labels(*labels, prediction_bucket(score)).inc()

"""Shadow traffic: the champion answers, challengers get a copy in the background.

Mirrors go through a bounded queue drained by a few workers, so a slow or dead challenger can never
delay or fail a user's response, and memory stays bounded: when the queue is full the mirror is dropped
and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlrollouts.gateway.headers import RawHeaders
from mlrollouts.gateway.metrics import GatewayMetrics
from mlrollouts.gateway.upstream import Upstream, UpstreamError

log = logging.getLogger(__name__)
SCORE_FIELDS = ("prediction", "score")


@dataclass(frozen=True)
class Comparison:
    agree: bool
    difference: float | None


def numeric_score(document: object) -> float | None:
    if isinstance(document, dict):
        for name in SCORE_FIELDS:
            value = document.get(name)
            if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
                try:
                    return float(value)
                except OverflowError:  # an int too large for a float is no score
                    return None
    return None


def compare_predictions(champion: bytes, challenger: bytes, tolerance: float) -> Comparison:
    """Numeric `prediction`/`score` fields agree within `tolerance`; otherwise equal JSON (or bytes)."""
    try:
        left, right = json.loads(champion), json.loads(challenger)
    except (ValueError, RecursionError):
        return Comparison(champion == challenger, None)
    a, b = numeric_score(left), numeric_score(right)
    if a is not None and b is not None:
        difference = abs(a - b)
        return Comparison(difference <= tolerance, difference)
    return Comparison(left == right, None)


@dataclass(frozen=True)
class MirrorJob:
    variant: str
    method: str
    path: str
    headers: RawHeaders
    body: bytes
    champion_status: int
    champion_body: bytes


class ShadowMirror:
    def __init__(
        self,
        experiment: str,
        clients: Mapping[str, Upstream],
        metrics: GatewayMetrics,
        queue_size: int,
        tolerance: float,
        workers: int = 8,
        clock: Callable[[], float] = time.perf_counter,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.experiment = experiment
        self.clients = clients
        self.metrics = metrics
        self.tolerance = tolerance
        self.clock = clock
        self.timeout_seconds = timeout_seconds
        self.queue: asyncio.Queue[MirrorJob] = asyncio.Queue(maxsize=queue_size)
        self.worker_count = workers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.worker_count)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def submit(self, job: MirrorJob) -> bool:
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.shadow_dropped.labels(self.experiment).inc()
            return False
        return True

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self._mirror(job)
            except Exception:  # a mirror must never take the worker down
                log.exception("shadow mirror failed: variant=%s", job.variant)
            finally:
                self.queue.task_done()

    async def _mirror(self, job: MirrorJob) -> None:
        labels = (self.experiment, job.variant)
        started = self.clock()
        try:
            response = await self.clients[job.variant].request(
                job.method, job.path, job.headers, job.body, self.timeout_seconds
            )
        except (UpstreamError, TimeoutError) as error:
            self.metrics.shadow_errors.labels(*labels).inc()
            log.debug("shadow request failed: variant=%s error=%r", job.variant, error)
            return
        finally:
            self.metrics.shadow_latency.labels(*labels).observe(self.clock() - started)
        if response.status_code >= 500:
            self.metrics.shadow_errors.labels(*labels).inc()
            return
        if response.status_code != job.champion_status:
            comparison = Comparison(False, None)
        else:
            comparison = compare_predictions(job.champion_body, response.content, self.tolerance)
        result = "agree" if comparison.agree else "disagree"
        self.metrics.shadow_agreement.labels(*labels, result).inc()
        if comparison.difference is not None:
            self.metrics.shadow_difference.labels(*labels).observe(comparison.difference)

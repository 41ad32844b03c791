"""Notifications, delivered off the reconcile path: a tick only queues them and never waits for a receiver.

One small queue and one worker task per (experiment, receiver), so one receiver's messages arrive in order
and a slow or failing receiver delays nobody else: not the tick, not the other receivers. A worker exits when
its queue is empty. Each message gets 1 + `retries` attempts with exponential backoff; a queue that is full
(a receiver down for a long time while an experiment moves fast) drops the newest message. Every outcome
is counted in `mlrollouts_notifications_total{result=sent|failed|dropped}`; a failure is also a Warning
Event NotificationFailed on the experiment (repeats aggregate into one Event with a count).

The URL of an experiment's receiver is read from its Secret here, in the worker, and is used only under
an allowed address (hooks.policy); a platform default's URL comes from the operator's environment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from prometheus_client import Counter

from mlrollouts.api import ModelExperiment
from mlrollouts.api.status import ModelExperimentStatus
from mlrollouts.controller.telemetry import REGISTRY
from mlrollouts.engine.types import Event
from mlrollouts.hooks import payloads
from mlrollouts.hooks.http import post_json
from mlrollouts.hooks.policy import HookPolicy

log = logging.getLogger(__name__)

QUEUE_LIMIT = 100
notifications = Counter(
    "mlrollouts_notifications",
    "Notifications by receiver and result: sent, failed (after every retry, or not allowed) or dropped (queue full).",
    ["namespace", "experiment", "receiver", "result"],
    registry=REGISTRY,
)

ReadSecret = Callable[[str, str, str], Awaitable[bytes]]
PostEvent = Callable[[Mapping[str, Any], Event], Awaitable[None]]


@dataclass(frozen=True)
class _Message:
    receiver: str
    type: str
    body: dict[str, Any]
    involved: dict[str, Any]
    url: str | None = None
    """A platform default's URL; None: read from `secret` (namespace, name, key) in the worker."""
    secret: tuple[str, str, str] | None = None


@dataclass
class Notifier:
    policy: HookPolicy
    read_secret: ReadSecret
    post_event: PostEvent
    client: Callable[[], httpx.AsyncClient]
    retries: int = 4
    backoff: float = 1.0
    """Seconds before the first retry; doubled each time, at most 60 s."""
    timeout: float = 10.0
    _queues: dict[tuple[str, str, str], asyncio.Queue[_Message]] = field(default_factory=dict)
    _workers: dict[tuple[str, str, str], asyncio.Task[None]] = field(default_factory=dict)

    def submit(self, experiment: ModelExperiment, previous: ModelExperimentStatus, now: datetime) -> int:
        """Queue a notification to every receiver when the new status is notable; returns how many were queued."""
        status = experiment.status
        if not payloads.notable(previous, status):
            return 0
        body = payloads.body(experiment, status, previous.phase, now.isoformat())
        meta = experiment.metadata
        involved = {
            "apiVersion": experiment.api_version,
            "kind": experiment.kind,
            "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
        }
        messages = [
            _Message(receiver.name, receiver.type, payloads.render(receiver.type, body), involved, url=receiver.url)
            for receiver in self.policy.default_receivers
        ]
        for receiver in experiment.spec.notifications or []:
            ref = receiver.url_secret_ref
            secret = (meta.namespace, ref.name, ref.key)
            messages.append(
                _Message(receiver.name, receiver.type, payloads.render(receiver.type, body), involved, secret=secret)
            )
        for message in messages:
            self._enqueue((meta.namespace, meta.name, message.receiver), message)
        return len(messages)

    def _enqueue(self, key: tuple[str, str, str], message: _Message) -> None:
        queue = self._queues.setdefault(key, asyncio.Queue(QUEUE_LIMIT))
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:
            notifications.labels(*key, "dropped").inc()
            log.warning("notification dropped experiment=%s/%s receiver=%s: queue full", *key)
            return
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key, queue))

    async def _work(self, key: tuple[str, str, str], queue: asyncio.Queue[_Message]) -> None:
        try:
            while True:
                try:
                    message = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    await self._deliver(key, message)
                except Exception:  # a bug in one delivery must not stop the receiver's queue
                    notifications.labels(*key, "failed").inc()
                    log.exception("notification to receiver=%s failed unexpectedly", message.receiver)
        finally:
            # No await between the empty queue and here: a message queued meanwhile starts a new worker.
            self._workers.pop(key, None)
            if queue.empty():
                self._queues.pop(key, None)

    async def _deliver(self, key: tuple[str, str, str], message: _Message) -> None:
        url = message.url or await self._secret_url(message)
        if url is None:
            notifications.labels(*key, "failed").inc()
            return
        answer = await post_json(
            self.client(),
            url,
            message.body,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            max_backoff=60.0,
        )
        if answer.passed:
            notifications.labels(*key, "sent").inc()
            return
        notifications.labels(*key, "failed").inc()
        await self._failed(message, answer.message)

    async def _secret_url(self, message: _Message) -> str | None:
        assert message.secret is not None
        namespace, name, key = message.secret
        if name not in self.policy.notification_secret_names:
            await self._failed(message, f'secret "{name}" is not in notifications.secretNames')
            return None
        try:
            raw = await self.read_secret(namespace, name, key)
        except LookupError as error:
            await self._failed(message, f"cannot read key {key!r} of secret {namespace}/{name}: {error}")
            return None
        url = raw.decode("utf-8", errors="replace").strip()
        if not self.policy.allows_notification(url):
            await self._failed(
                message,
                f"the URL in secret {namespace}/{name} (key {key}) is not under an allowed address: ask the "
                "platform team to add it to the chart value notifications.allowedAddresses",
            )
            return None
        return url

    async def _failed(self, message: _Message, why: str) -> None:
        text = f"notification to {message.receiver} ({message.type}) failed: {why}"
        log.warning("%s/%s %s", message.involved["metadata"]["namespace"], message.involved["metadata"]["name"], text)
        await self.post_event(message.involved, Event("Warning", "NotificationFailed", text))

    async def idle(self) -> None:
        """Wait until every queued notification was delivered or given up (tests and shutdown)."""
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

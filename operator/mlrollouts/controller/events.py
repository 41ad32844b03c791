"""Kubernetes Events with series, as client-go's recorder posts them.

A failure that lasts (a missing HTTPRoute, an unreachable Prometheus) is reported at every tick; one new
Event per tick buries everything else in `kubectl describe` and loads the API server. Like client-go's
EventCorrelator, a repeat of the same (object, type, reason, message) patches the Event already posted:
`count`, `lastTimestamp` and `series` grow, the object stays one. After a restart (the cache is in memory)
or once the Event has expired, a new one is created. Posting is best effort: an Event that cannot be
written is logged and never fails the tick.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlrollouts.engine.types import Event
from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.kube import ObjectClient, ObjectNotFound

log = logging.getLogger(__name__)
COMPONENT = "mlrollouts"
MAX_SERIES = 4096
"""Distinct (object, type, reason, message) remembered; the oldest is forgotten first."""


@dataclass
class _Series:
    name: str
    count: int


@dataclass
class EventRecorder:
    objects: ObjectClient
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _series: OrderedDict[tuple[str, ...], _Series] = field(default_factory=OrderedDict)

    async def post(self, involved: Mapping[str, Any], event: Event) -> None:
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        key = (namespace, meta.get("name") or "", meta.get("uid") or "", event.type, event.reason, event.message)
        moment = self.clock()
        now = _timestamp(moment)
        try:
            series = self._series.get(key)
            if series is not None:
                try:
                    await self._repeat(namespace, series, moment)
                    self._series.move_to_end(key)
                    return
                except ObjectNotFound:  # expired (the API server keeps Events for an hour) or deleted
                    del self._series[key]
            name = await self._create(namespace, involved, event, now)
        except RoutingError as error:
            log.warning("event not posted reason=%s: %s", event.reason, error)
            return
        self._series[key] = _Series(name, 1)
        while len(self._series) > MAX_SERIES:
            self._series.popitem(last=False)

    async def _repeat(self, namespace: str, series: _Series, moment: datetime) -> None:
        count = series.count + 1
        observed = {"count": count, "lastObservedTime": _micro_timestamp(moment)}
        patch = {"count": count, "lastTimestamp": _timestamp(moment), "series": observed}
        await self.objects.patch("v1", "events", namespace, series.name, patch, "merge")
        series.count = count

    async def _create(self, namespace: str, involved: Mapping[str, Any], event: Event, now: str) -> str:
        meta = involved.get("metadata") or {}
        name = f"{meta.get('name') or 'object'}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.objects.create("v1", "events", namespace, body)
        return name


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_timestamp(moment: datetime) -> str:
    """A MicroTime (series.lastObservedTime): the API server refuses it without the six fraction digits, so a
    repeat was never counted on a real cluster (422), only on the emulator."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

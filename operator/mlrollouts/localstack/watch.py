"""The change log behind watch requests: events numbered by resourceVersion, fanned out to watchers.

A real API server lets a watch resume from a resourceVersion; kopf and kubectl list first and then watch
from the list's version, so they must see exactly the changes after it — no stale replays.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChangeEvent:
    revision: int
    resource: tuple[str, str, str]  # group, version, plural
    type: str  # ADDED, MODIFIED, DELETED
    object: Mapping[str, Any]


class TooOldResourceVersion(Exception):
    """The requested version has left the retained log: the client must list again (HTTP 410)."""


class Watcher:
    """One open watch: a queue of matching events; None in the queue means the server is stopping."""

    def __init__(self, resource: tuple[str, str, str], accepts: Callable[[Mapping[str, Any]], bool]) -> None:
        self.resource = resource
        self.accepts = accepts
        self.queue: asyncio.Queue[ChangeEvent | None] = asyncio.Queue()

    def offer(self, event: ChangeEvent) -> None:
        if event.resource == self.resource and self.accepts(event.object):
            self.queue.put_nowait(event)


class ChangeLog:
    """Bounded history of changes plus the set of open watchers (single event loop, no locking)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._events: collections.deque[ChangeEvent] = collections.deque(maxlen=capacity)
        self._watchers: set[Watcher] = set()
        self._forgotten_up_to = 0  # highest revision that fell out of the deque

    def publish(self, event: ChangeEvent) -> None:
        if len(self._events) == self._events.maxlen:
            self._forgotten_up_to = self._events[0].revision
        self._events.append(event)
        for watcher in list(self._watchers):
            watcher.offer(event)

    def subscribe(self, watcher: Watcher, since: int | None) -> list[ChangeEvent]:
        """Register the watcher; return the retained events after `since` (none when `since` is None)."""
        if since is not None and since < self._forgotten_up_to:
            raise TooOldResourceVersion(f"too old resource version: {since} ({self._forgotten_up_to})")
        self._watchers.add(watcher)
        if since is None:
            return []
        return [
            event
            for event in self._events
            if event.revision > since and event.resource == watcher.resource and watcher.accepts(event.object)
        ]

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close(self) -> None:
        """Wake every watcher so its stream ends (used when the server stops)."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

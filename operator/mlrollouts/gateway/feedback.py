"""Outcome feedback: which variant served a request, and what the client says happened afterwards.

The request log is bounded in size (LRU) and in age (TTL) so memory stays flat however long the gateway
runs; feedback for an evicted request is answered 404, never attributed to a guess.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Served:
    variant: str
    model_version: str


class RequestLog:
    def __init__(self, capacity: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.ttl = ttl_seconds
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, Served]] = OrderedDict()

    def record(self, request_id: str, served: Served) -> None:
        self._entries[request_id] = (self.clock(), served)
        self._entries.move_to_end(request_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def lookup(self, request_id: str) -> Served | None:
        entry = self._entries.get(request_id)
        if entry is None:
            return None
        recorded_at, served = entry
        if self.clock() - recorded_at > self.ttl:
            del self._entries[request_id]
            return None
        return served

    def __len__(self) -> int:
        return len(self._entries)


class FeedbackError(ValueError):
    """A malformed feedback body; the message names the field and the fix."""


@dataclass(frozen=True)
class Feedback:
    request_id: str | None
    user_id: str | None
    reward: int | None
    value: float | None


def parse_feedback(body: Any) -> Feedback:
    if not isinstance(body, dict):
        raise FeedbackError('body must be a JSON object like {"request_id": "...", "reward": 1}')
    request_id, user_id = body.get("request_id"), body.get("user_id")
    if (request_id is None) == (user_id is None):
        raise FeedbackError("give exactly one of request_id or user_id")
    for name, ident in (("request_id", request_id), ("user_id", user_id)):
        if ident is not None and (not isinstance(ident, str | int) or isinstance(ident, bool) or ident == ""):
            raise FeedbackError(f"{name} must be a non-empty string")
    reward, value = body.get("reward"), body.get("value")
    if (reward is None) == (value is None):
        raise FeedbackError("give exactly one of reward (0 or 1) or value (a number)")
    if reward is not None and reward not in (0, 1):
        raise FeedbackError(f"reward must be 0 or 1, got {reward!r}")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise FeedbackError(f"value must be a finite number, got {value!r}")
    return Feedback(
        request_id=None if request_id is None else str(request_id),
        user_id=None if user_id is None else str(user_id),
        reward=None if reward is None else int(reward),
        value=None if value is None else float(value),
    )

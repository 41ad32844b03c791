"""Outcome feedback: what a client says happened after a response, proven by the response's token.

An outcome counts once per response (token nonce). The replay cache remembers counted nonces until their token expires;
it is bounded in entries and in bytes. When it must evict, it raises a floor: any token expiring at or
before the evicted one is refused from then on, so eviction can drop late feedback but never count an
outcome twice.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENTRY_OVERHEAD_BYTES = 180  # measured on CPython 3.11: ~128 B of OrderedDict slot and int, 49 B str header


class FeedbackError(ValueError):
    """A malformed feedback body; the message names the field and the fix."""


@dataclass(frozen=True)
class Feedback:
    token: str
    request_id: str | None
    reward: int | None
    value: float | None


def parse_feedback(body: Any, max_value: float) -> Feedback:
    """Every field checked before anything is recorded; `value` within ±max_value so its square is finite."""
    if not isinstance(body, dict):
        raise FeedbackError('body must be a JSON object like {"token": "...", "reward": 1}')
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise FeedbackError("token: give the x-mlrollouts-token header of the response this outcome is about")
    request_id = body.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise FeedbackError("request_id must be a string (optional; it must match the token's)")
    reward, value = body.get("reward"), body.get("value")
    if (reward is None) == (value is None):
        raise FeedbackError("give exactly one of reward (0 or 1) or value (a number)")
    if reward is not None and (isinstance(reward, bool) or reward not in (0, 1)):
        raise FeedbackError(f"reward must be 0 or 1, got {str(reward)[:40]!r}")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FeedbackError(f"value must be a finite number, got {str(value)[:40]!r}")
        try:
            value = float(value)
        except OverflowError:  # an int beyond any float
            value = math.inf
        if not math.isfinite(value) or abs(value) > max_value:
            raise FeedbackError(f"value must be a finite number within ±{max_value:g} (--max-outcome-value)")
    return Feedback(token, request_id, None if reward is None else int(reward), value)


class ReplayCache:
    def __init__(self, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self.floor = -math.inf
        self._entries: OrderedDict[str, int] = OrderedDict()

    @staticmethod
    def cost(request_id: str) -> int:
        return len(request_id.encode()) + ENTRY_OVERHEAD_BYTES

    def claim(self, request_id: str, expires: int) -> str | None:
        """Record `request_id` (a token nonce) as counted; None when it may count, else why it may not."""
        self._forget_expired()
        if expires <= self.floor:
            return "its token is older than the replay cache remembers (raise --feedback-capacity)"
        if request_id in self._entries:
            return "an outcome for this request was already counted"
        self._entries[request_id] = expires
        self.bytes += self.cost(request_id)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            evicted, evicted_expiry = self._entries.popitem(last=False)
            self.bytes -= self.cost(evicted)
            self.floor = max(self.floor, evicted_expiry)
        return None

    def _forget_expired(self) -> None:
        now = self.clock()
        while self._entries:
            request_id, expires = next(iter(self._entries.items()))
            if expires >= now:
                return
            del self._entries[request_id]
            self.bytes -= self.cost(request_id)

    def __len__(self) -> int:
        return len(self._entries)

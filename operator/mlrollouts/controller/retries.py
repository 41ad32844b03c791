"""How long a failed tick waits before it is tried again: a growing delay, never longer than the experiment's
own interval, spread so that experiments that failed together do not retry together.

A flat 5 s made a failing experiment tick twelve times as often as a healthy one at a 60 s interval, so an
overloaded API server's timeouts (issue 14's capacity run) multiplied its load; client-go's workqueue and Argo
Rollouts back off per object for the same reason. The cap keeps an experiment that fails from waiting longer
than one that does not: slower under load, never parked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlrollouts.api.durations import duration_seconds

SPREAD = 0.5
"""A retry waits between (1 - SPREAD) and 1 times its nominal delay, fixed per experiment and attempt."""
DEFAULT_CAP = 60.0
"""The longest delay when the experiment's interval cannot be read (a spec that does not parse)."""


def spread(key: str) -> float:
    """A fraction in [0, 1) fixed by the key: experiments that failed together retry apart, and the delay a
    failed tick reports in its status is the one it then waits (no second random draw)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") / 2**32


def retry_cap(body: Mapping[str, Any] | None) -> float:
    """The experiment's analysis interval, read from the raw object (the spec may not parse)."""
    try:
        return duration_seconds(str(((body or {}).get("spec") or {})["analysis"]["interval"]))
    except (KeyError, TypeError, ValueError):
        return DEFAULT_CAP


@dataclass
class RetryBackoff:
    """Consecutive failed ticks per experiment, and the delay the next retry waits."""

    first: float = 5.0
    """Seconds before the first retry; each further consecutive failure doubles it, up to the cap."""
    jitter: Callable[[str], float] = spread
    """(experiment and attempt) -> [0, 1): how much of SPREAD a delay loses."""
    _failures: dict[tuple[str, str], int] = field(default_factory=dict, init=False)

    def delay(self, namespace: str, name: str, cap: float, *, peek: bool = False) -> float:
        """Counts a failure and returns its delay; `peek`: the delay the next failure gets, counting nothing."""
        attempt = self._failures.get((namespace, name), 0) + 1
        if not peek:
            self._failures[(namespace, name)] = attempt
        nominal = min(max(cap, self.first), self.first * 2 ** min(attempt - 1, 30))
        return round(nominal * (1 - SPREAD * self.jitter(f"{namespace}/{name}/{attempt}")), 1)

    def succeeded(self, namespace: str, name: str) -> None:
        """A tick went through (or the loop ended): the next failure waits `first` again."""
        self._failures.pop((namespace, name), None)

"""Kubernetes-style durations ("30s", "10m", "1h30m", "14d"): parsed once, rendered back for PromQL.

Every duration of the API is bounded: at most 365 days (a larger one overflowed Python's datetime a few
ticks into the experiment), and the analysis interval between 5 s and 1 h (1 ms meant several status writes
and dozens of queries per second for one experiment; 10000 h meant no guardrail check for a year). Local
demos and tests that compress time may lower the interval floor with MLROLLOUTS_MIN_INTERVAL (e.g. 1s); the
operator and `mlrollouts validate` read the same variable, so they give the same verdict.
"""

from __future__ import annotations

import functools
import os
import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_SECONDS = 365 * 86400
MAX_INTERVAL_SECONDS = 3600
DEFAULT_MIN_INTERVAL = "5s"
MIN_INTERVAL_ENV = "MLROLLOUTS_MIN_INTERVAL"


@functools.lru_cache(maxsize=1024)
def duration_seconds(text: str) -> float:
    """Seconds in "1h30m" as a number (no timedelta, so no overflow); ValueError names the accepted units.
    Cached: each tick reads the same few durations (spec.analysis.interval among them) again."""
    if not re.fullmatch(DURATION_PATTERN, text or ""):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (ms, s, m, h, d), e.g. 30s, 10m, 14d")
    return float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text)))


def _at_most_a_year(text: str) -> str:
    if duration_seconds(text) > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {text!r} is longer than 365d: use at most 365d")
    return text


def min_interval_seconds() -> float:
    """The interval floor: 5 s, or MLROLLOUTS_MIN_INTERVAL (at least 100ms) where time is compressed."""
    raw = os.environ.get(MIN_INTERVAL_ENV, "").strip() or DEFAULT_MIN_INTERVAL
    try:
        return max(0.1, min(duration_seconds(raw), MAX_INTERVAL_SECONDS))
    except ValueError:
        return duration_seconds(DEFAULT_MIN_INTERVAL)


def _interval_bounds(text: str) -> str:
    seconds, floor = duration_seconds(text), min_interval_seconds()
    if not floor <= seconds <= MAX_INTERVAL_SECONDS:
        raise ValueError(f"interval {text!r} is outside {floor:g}s to 1h: pick an interval between {floor:g}s and 1h")
    return text


_Text = StringConstraints(pattern=DURATION_PATTERN, max_length=32)
Duration = Annotated[str, _Text, AfterValidator(_at_most_a_year)]
"""Any duration of the API: at most 365 days."""
Interval = Annotated[str, _Text, AfterValidator(_interval_bounds)]
"""The analysis interval: 5 s (MLROLLOUTS_MIN_INTERVAL) to 1 h."""


def parse_duration(text: str) -> timedelta:
    """Parse "1h30m" into a timedelta; ValueError names the accepted units or the 365-day bound."""
    seconds = duration_seconds(text)
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {text!r} is longer than 365d: use at most 365d")
    return timedelta(seconds=seconds)


def promql_duration(delta: timedelta) -> str:
    """Render a timedelta as a PromQL range ("3h25m12s"); at least 1s so a range is never empty."""
    total = max(1, int(delta.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)

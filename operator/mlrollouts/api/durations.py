"""Kubernetes-style durations ("30s", "10m", "1h30m", "14d"): parsed once, rendered back for PromQL."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import StringConstraints

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]


def parse_duration(text: str) -> timedelta:
    """Parse "1h30m" into a timedelta; ValueError names the accepted units."""
    if not re.fullmatch(DURATION_PATTERN, text or ""):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (ms, s, m, h, d), e.g. 30s, 10m, 14d")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
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

"""The metrics interface the controller calls once per tick."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from mlrollouts.api import ModelExperiment
from mlrollouts.engine.types import Observations


class MetricsUnavailable(RuntimeError):
    """The metrics source could not answer at all (unreachable, auth); per-query problems go in Observations."""


class MetricsProvider(Protocol):
    async def observe(self, experiment: ModelExperiment, now: datetime) -> Observations: ...

"""One small interface for every traffic provider (Flagger's router shape): apply, read back, restore."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mlrollouts.engine.types import Mirror, Split


class RoutingError(RuntimeError):
    """Traffic could not be moved; the message says which object and what to fix."""


@dataclass(frozen=True)
class AppliedTraffic:
    """What the provider actually did: a replica ratio, for instance, only approximates the split."""

    split: Split
    mirror: Mirror | None = None
    message: str | None = None
    consistent: bool = True
    """False when the managed parts of the object disagree (one route edited by hand): re-apply to repair."""
    changed: bool = False
    """apply() wrote something: re-applying the status's traffic with changed=True means it had drifted."""


class TrafficRouter(Protocol):
    async def current_split(self) -> AppliedTraffic:
        """Read the split (and mirror) from the routing object as it is now."""
        ...

    async def apply(self, split: Split, mirror: Mirror | None) -> AppliedTraffic:
        """Set the split; idempotent, and verified by reading it back."""
        ...

    async def restore(self) -> None:
        """Champion 100 %, no mirror: what rollback and deletion mean."""
        ...

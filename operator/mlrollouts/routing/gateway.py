"""The built-in gateway reads the split from the experiment's status, so this router only records it.

No object is written here: the status patch that follows a tick is what moves the gateway's traffic.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import AppliedTraffic
from mlrollouts.routing.common import normalize_mirror
from mlrollouts.routing.weights import complete_split


class GatewayRouter:
    def __init__(self, variants: Sequence[str], split: Split, mirror: Mirror | None = None) -> None:
        """`split` and `mirror` are what the experiment's status says the gateway is doing now."""
        self._names = list(variants)
        self._applied = AppliedTraffic(Split(complete_split(split, self._names)), normalize_mirror(mirror, self._names))

    async def current_split(self) -> AppliedTraffic:
        return self._applied

    async def apply(self, split: Split, mirror: Mirror | None) -> AppliedTraffic:
        weights, wanted_mirror = complete_split(split, self._names), normalize_mirror(mirror, self._names)
        changed = weights != dict(self._applied.split.weights) or wanted_mirror != self._applied.mirror
        message = "the built-in gateway reads the split from the experiment's status"
        self._applied = AppliedTraffic(Split(weights), wanted_mirror, message)
        return AppliedTraffic(Split(weights), wanted_mirror, message, changed=changed)

    async def restore(self) -> None:
        await self.apply(Split.all_to(self._names[0], self._names), None)

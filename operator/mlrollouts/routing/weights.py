"""Integer arithmetic shared by the routers: percentages from raw weights, replicas from percentages."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from mlrollouts.engine.types import Split
from mlrollouts.routing.base import RoutingError


def largest_remainder(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """Integers summing to `total` in proportion to `shares` (Hamilton's method; ties go to the earlier name)."""
    weight_sum = sum(shares.values())
    if weight_sum <= 0:
        raise ValueError(f"cannot apportion {total} over weights that sum to {weight_sum}")
    quotas = {name: total * share / weight_sum for name, share in shares.items()}
    counts = {name: math.floor(q) for name, q in quotas.items()}
    order = sorted(quotas, key=lambda name: -(quotas[name] - counts[name]))
    for name in order[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def percentages(raw: Mapping[str, float], what: str) -> Split:
    """The split that relative weights (Gateway API weights, replica counts) amount to, in whole percent."""
    if sum(raw.values()) <= 0:
        raise RoutingError(f"{what} sends no traffic to any variant (all weights are 0)")
    return Split(largest_remainder(raw, 100))


def complete_split(split: Split, variants: Sequence[str]) -> dict[str, int]:
    """The split's weight for every variant of the experiment, in experiment order; unknown names are an error."""
    unknown = sorted(set(split.weights) - set(variants))
    if unknown:
        raise RoutingError(f"split names {', '.join(unknown)}, which are not variants of the experiment {variants}")
    return {name: int(split.weights.get(name, 0)) for name in variants}


def same_split(a: Split, b: Split) -> bool:
    """Equal once variants missing from one side count as 0."""
    names = set(a.weights) | set(b.weights)
    return all(a.weights.get(n, 0) == b.weights.get(n, 0) for n in names)


def replica_counts(weights: Mapping[str, int], total: int) -> dict[str, int]:
    """Replicas proportional to weights; every variant with weight > 0 keeps at least one replica."""
    serving = [name for name, weight in weights.items() if weight > 0]
    if len(serving) > total:
        raise RoutingError(
            f"{len(serving)} variants need traffic but traffic.service.totalReplicas is {total}: "
            f"raise totalReplicas to at least {len(serving)}"
        )
    counts = {name: 0 for name in weights} | largest_remainder({n: weights[n] for n in serving}, total)
    for name in serving:
        if counts[name] == 0:
            donor = max(serving, key=lambda n: counts[n])
            counts[donor] -= 1
            counts[name] = 1
    return counts

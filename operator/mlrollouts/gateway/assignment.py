"""Deterministic, monotone user → variant assignment.

A user's bucket is `blake2b(experiment, user_id) mod 10000`: stable across processes, restarts and
machines (Python's `hash()` is salted per process, so it is never used here).

Layout of the 10,000 buckets, chosen so that ramping a challenger up never moves a user who is already
on it (monotone):

* With n challengers, challenger i owns the region that starts at `i * 10000 // n` and is
  `10000 // n` buckets long (the last one also takes the remainder). Its weight fills that region from
  the region's start upwards, so growing 5 % → 10 % only adds buckets after the ones it had.
* The champion takes every bucket no challenger holds, i.e. the top of each region.
* A challenger whose weight exceeds its region (e.g. a bandit giving 80 % to one of two challengers)
  takes the excess from the highest free buckets, scanning down from 9999. That overflow is still
  monotone in its own weight while the other challengers keep theirs; when another challenger grows
  into a bucket the overflow held, those users move. With one challenger this never happens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BUCKETS = 10_000


def bucket_of(experiment: str, user_id: str) -> int:
    """The user's bucket in [0, 10000) for this experiment; the same everywhere, forever."""
    digest = hashlib.blake2b(f"{experiment}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def weight_to_buckets(percent: float) -> int:
    return round(percent * BUCKETS / 100)


def layout(champion: str, challengers: Sequence[str], weights: Mapping[str, float]) -> tuple[str, ...]:
    """Owner of each bucket. `weights` are percents summing to 100; missing names weigh 0."""
    owners: list[str | None] = [None] * BUCKETS
    if not challengers:
        return (champion,) * BUCKETS
    region = BUCKETS // len(challengers)
    overflow: list[tuple[str, int]] = []
    for index, name in enumerate(challengers):
        start = index * region
        size = BUCKETS - start if index == len(challengers) - 1 else region
        wanted = weight_to_buckets(weights.get(name, 0))
        for bucket in range(start, start + min(wanted, size)):
            owners[bucket] = name
        if wanted > size:
            overflow.append((name, wanted - size))
    bucket = BUCKETS - 1
    for name, extra in overflow:
        while extra > 0 and bucket >= 0:
            if owners[bucket] is None:
                owners[bucket] = name
                extra -= 1
            bucket -= 1
    return tuple(champion if owner is None else owner for owner in owners)


@dataclass(frozen=True)
class Assignment:
    """A split compiled into a bucket table: O(1) per request."""

    experiment: str
    owners: tuple[str, ...]

    @classmethod
    def build(
        cls, experiment: str, champion: str, challengers: Sequence[str], weights: Mapping[str, float]
    ) -> Assignment:
        return cls(experiment, layout(champion, challengers, weights))

    def variant_for_user(self, user_id: str) -> str:
        return self.owners[bucket_of(self.experiment, user_id)]

    def variant_for_bucket(self, bucket: int) -> str:
        return self.owners[bucket]

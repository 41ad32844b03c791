"""Shard Leases: the configuration, the stable experiment → shard hash, the balanced shard → replica assignment,
and the Lease calls (see sharding.py for the protocol).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kubernetes

LEASE_SET_LABEL = "mlrollouts.dev/lease-set"
LEASE_KIND_LABEL = "mlrollouts.dev/lease-kind"


@dataclass(frozen=True)
class ShardingConfig:
    identity: str
    """This replica's name in the Leases' holderIdentity (the pod name in a cluster)."""
    namespace: str
    """Where the Leases live: the operator's own namespace."""
    shards: int = 16
    """Fixed number of shards S; every replica must use the same value (the chart sets it once)."""
    lease_duration: float = 15.0
    """Seconds after the last observed renewal before another replica may take a shard."""
    renew_deadline: float = 10.0
    """Seconds after the start of its last successful renewal before the holder stops writing for a shard."""
    retry_period: float = 2.0
    """Seconds between renewal / acquisition rounds."""
    name_prefix: str = "mlrollouts"

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= 1024:
            raise ValueError(f"shards must be 1-1024, got {self.shards}")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "lease timings must satisfy 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration}"
            )

    @property
    def takeover_bound(self) -> float:
        """Worst case from a replica's death to a survivor holding its shards: expiry, seen one round late."""
        return self.lease_duration + 2 * self.retry_period

    def shard_lease(self, shard: int) -> str:
        return f"{self.name_prefix}-shard-{shard}"

    def member_lease(self, identity: str | None = None) -> str:
        return f"{self.name_prefix}-member-{_dns_label(identity or self.identity)}"


def shard_of(namespace: str, name: str, shards: int) -> int:
    """A stable hash (not Python's salted hash()) so every replica agrees on the shard."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def assign(shards: int, members: list[str]) -> dict[int, str]:
    """Balanced rendezvous hashing: each shard to its highest-scoring member that has fewer than ceil(S/N).

    Deterministic in the member set (every replica computes the same answer) and mostly stable: a member joining
    or leaving moves about S/N shards, not all of them.
    """
    if not members:
        return {}
    cap = math.ceil(shards / len(members))
    load = dict.fromkeys(members, 0)
    owners: dict[int, str] = {}
    for shard in range(shards):
        ranked = sorted(members, key=lambda member: _score(shard, member), reverse=True)
        owner = next(member for member in ranked if load[member] < cap)
        owners[shard] = owner
        load[owner] += 1
    return owners


def _score(shard: int, member: str) -> bytes:
    return hashlib.sha256(f"{shard}/{member}".encode()).digest()


def _dns_label(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in text.lower()).strip("-")
    return cleaned[:40] or hashlib.sha256(text.encode()).hexdigest()[:12]


def micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseApi:
    """The Lease calls, on a thread pool of their own: renewals must not queue behind slow ticks."""

    configuration: kubernetes.client.Configuration
    namespace: str
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="leases"))

    def __post_init__(self) -> None:
        self._api = kubernetes.client.CoordinationV1Api(kubernetes.client.ApiClient(self.configuration))

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        call = getattr(self._api, method)

        def request() -> dict[str, Any]:
            response = call(*args, _preload_content=False, _request_timeout=5, **kwargs)
            return json.loads(response.data or b"{}")

        return await asyncio.get_running_loop().run_in_executor(self._pool, request)

    async def list(self, label_selector: str) -> list[dict[str, Any]]:
        found = await self._run("list_namespaced_lease", self.namespace, label_selector=label_selector)
        return list(found.get("items") or [])

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._run("create_namespaced_lease", self.namespace, body)

    async def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with metadata.resourceVersion: 409 if anyone wrote the Lease since it was read."""
        return await self._run("replace_namespaced_lease", body["metadata"]["name"], self.namespace, body)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

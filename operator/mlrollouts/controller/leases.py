"""Shard Leases: the configuration, the stable experiment → shard hash, the balanced shard → replica assignment,
and the Lease calls (see sharding.py for the protocol).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import kubernetes

from mlrollouts.routing.kube import ApiRequestFailed, ObjectClient, ObjectConflict, ObjectNotFound

LEASE_SET_LABEL = "mlrollouts.dev/lease-set"
LEASE_KIND_LABEL = "mlrollouts.dev/lease-kind"
LEASES_API = "coordination.k8s.io/v1"


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


class LeaseApi:
    """The Lease calls over an ObjectClient of their own (its own connection pool: renewals never wait for a
    connection behind the ticks'). Refusals come back as `kubernetes.client.ApiException` with the HTTP status,
    as sharding.py (and its fake) expects: 404 / 409 for a Lease someone else changed or removed."""

    def __init__(self, objects: ObjectClient, namespace: str) -> None:
        self._objects, self.namespace = objects, namespace

    async def list(self, label_selector: str) -> list[dict[str, Any]]:
        path = f"/apis/{LEASES_API}/namespaces/{self.namespace}/leases?labelSelector={quote(label_selector)}"
        with _as_api_exception():
            status, found = await self._objects.read_path(path)  # type: ignore[attr-defined]
        if status != 200 or not isinstance(found, dict):
            raise kubernetes.client.ApiException(status=status, reason=f"listing Leases: {str(found)[:300]}")
        return list(found.get("items") or [])

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        with _as_api_exception():
            return await self._objects.create(LEASES_API, "leases", self.namespace, body)

    async def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with metadata.resourceVersion: 409 if anyone wrote the Lease since it was read."""
        with _as_api_exception():
            return await self._objects.replace(LEASES_API, "leases", self.namespace, body["metadata"]["name"], body)

    def close(self) -> None:
        close = getattr(self._objects, "close", None)
        if close is not None:
            close()


@contextlib.contextmanager
def _as_api_exception() -> Iterator[None]:
    try:
        yield
    except ObjectNotFound as error:
        raise kubernetes.client.ApiException(status=404, reason=str(error)) from error
    except ObjectConflict as error:
        raise kubernetes.client.ApiException(status=409, reason=str(error)) from error
    except ApiRequestFailed as error:
        raise kubernetes.client.ApiException(status=error.http_status, reason=str(error)) from error

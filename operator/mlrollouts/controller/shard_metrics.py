"""Metrics of active-active sharding and of refused writes (names are a contract with docs/observability.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from mlrollouts.controller.telemetry import REGISTRY

write_conflicts = Counter(
    "mlrollouts_write_conflicts",
    "Writes the API server refused because the object changed since it was read (resourceVersion guard, 409).",
    ["resource"],
    registry=REGISTRY,
)
writes_blocked = Counter(
    "mlrollouts_shard_writes_blocked",
    "Writes not sent because this replica could no longer prove it holds the experiment's shard Lease.",
    registry=REGISTRY,
)
shard_held = Gauge(
    "mlrollouts_shard_held",
    "1 while this replica holds the shard's Lease (and may write for it).",
    ["shard"],
    registry=REGISTRY,
)
members = Gauge("mlrollouts_shard_members", "Live replicas this replica sees (member Leases).", registry=REGISTRY)
experiments_owned = Gauge(
    "mlrollouts_experiments_owned", "Experiments this replica reconciles now (in shards it holds).", registry=REGISTRY
)
acquisitions = Counter("mlrollouts_shard_acquisitions", "Shard Leases this replica acquired.", registry=REGISTRY)
releases = Counter(
    "mlrollouts_shard_releases", "Shards this replica handed over (rebalancing or shutdown).", registry=REGISTRY
)
lapses = Counter(
    "mlrollouts_shard_lapses",
    "Shards dropped because no renewal succeeded within the renew deadline (API trouble or a starved loop).",
    registry=REGISTRY,
)

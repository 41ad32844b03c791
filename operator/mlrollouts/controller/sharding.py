"""Active-active replicas: experiments split into S shards, each shard owned through a `coordination.k8s.io` Lease.

An experiment belongs to shard `hash(namespace/name) mod S` (stable across processes and restarts). Every replica
renews a *member* Lease; from the live members each replica computes the same balanced assignment of shards to
members (rendezvous hashing, capped at ceil(S/N) shards per member, as Argo CD's sharded application controller
spreads clusters). A replica acquires the shard Leases assigned to it once they are free or expired, and releases
those assigned to someone else, so a joining replica gets its share and a dead replica's shards expire and move.

Timing follows client-go's leader election, per shard: a holder renews every `retry_period`; it counts a shard as
its own only until `renew_deadline` after the start of its last successful renewal, while the others wait a full
`lease_duration` after they *observed* the last change before taking it. The gap (5 s by default) covers a write
that was already in flight; the status write's resourceVersion guard covers the rest (refusals are counted).
Expiry is judged on each observer's own monotonic clock, never by comparing clocks across machines.

kopf runs standalone on every replica (no peering) and starts every experiment's analysis loop everywhere; the loop
asks `owns()` before each tick and otherwise parks in `wait_owned()`. A kopf `when=` filter cannot do this: kopf
re-evaluates filters only on the object's own watch events, and a shard changes hands without any.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes

from mlrollouts.controller import shard_metrics
from mlrollouts.controller.leases import (
    LEASE_KIND_LABEL,
    LEASE_SET_LABEL,
    LeaseApi,
    ShardingConfig,
    assign,
    micro_time,
    shard_of,
)
from mlrollouts.routing.kube import ObjectConflict

log = logging.getLogger(__name__)


class LeaseLost(ObjectConflict):
    """A write for a shard this replica can no longer prove it holds: refused locally, before any request.

    An ObjectConflict, so a tick ends as it does when someone else wrote first: no not-ready status, re-read later.
    """


_current_shard: contextvars.ContextVar[int | None] = contextvars.ContextVar("mlrollouts_shard", default=None)


@dataclass
class _Observed:
    holder: str
    version: str
    seen_at: float
    duration: float


class ShardManager:
    """Holds this replica's shards; `may_write` is the proof a write needs, `wait_owned` parks idle experiments."""

    def __init__(self, config: ShardingConfig, api: LeaseApi, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.api, self.clock = config, api, clock
        self._valid_until: dict[int, float] = {}
        self._owned = {shard: asyncio.Event() for shard in range(config.shards)}
        self._observed: dict[str, _Observed] = {}
        self._in_flight = dict.fromkeys(range(config.shards), 0)
        self._releasing: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconciling: set[tuple[str, str]] = set()
        self.assignment: dict[int, str] = {}

    # --- what the handlers ask ----------------------------------------------------------------------------
    def shard_for(self, namespace: str, name: str) -> int:
        return shard_of(namespace, name, self.config.shards)

    def may_write(self, shard: int) -> bool:
        return shard not in self._releasing and self.clock() < self._valid_until.get(shard, 0.0)

    def owns(self, namespace: str, name: str) -> bool:
        return self.may_write(self.shard_for(namespace, name))

    def held(self) -> list[int]:
        return sorted(shard for shard in self._valid_until if self.may_write(shard))

    async def wait_owned(self, namespace: str, name: str, stopped: Any) -> None:
        """Until this replica holds the experiment's shard, or the daemon is stopped."""
        self.forget(namespace, name)
        event = self._owned[self.shard_for(namespace, name)]
        # Set but not owned: the renew deadline passed before the next round cleared it; poll instead of spinning.
        owned = asyncio.ensure_future(asyncio.sleep(self.config.retry_period / 4) if event.is_set() else event.wait())
        stop = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait([owned, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            owned.cancel()
            stop.cancel()

    @contextlib.contextmanager
    def writing_for(self, namespace: str, name: str) -> Iterator[int]:
        """Marks the current task as acting for the experiment's shard: guarded writes check it, releases wait."""
        shard = self.shard_for(namespace, name)
        token = _current_shard.set(shard)
        self._in_flight[shard] += 1
        self._reconciling.add((namespace, name))
        shard_metrics.experiments_owned.set(len(self._reconciling))
        try:
            yield shard
        finally:
            self._in_flight[shard] -= 1
            _current_shard.reset(token)

    def forget(self, namespace: str, name: str) -> None:
        """The experiment's loop parked or ended: it no longer counts as reconciled here."""
        self._reconciling.discard((namespace, name))
        shard_metrics.experiments_owned.set(len(self._reconciling))

    def check_write(self) -> None:
        """Raise LeaseLost if the current task acts for a shard this replica cannot prove it holds."""
        shard = _current_shard.get()
        if shard is not None and not self.may_write(shard):
            shard_metrics.writes_blocked.inc()
            raise LeaseLost(f"shard {shard} is no longer held by {self.config.identity}: write not sent")

    # --- the loop ------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Renew, observe and rebalance every retry period until cancelled."""
        while True:
            started = time.monotonic()
            try:
                await self.round()
            except kubernetes.client.ApiException as error:  # held shards lapse on their own deadline
                log.warning("shard round failed: HTTP %s %s %s", error.status, error.reason, (error.body or "")[:300])
            except Exception as error:  # the API may be down: held shards lapse on their own deadline
                log.warning("shard round failed: %s", error)
            self._expire()
            await asyncio.sleep(max(0.0, self.config.retry_period - (time.monotonic() - started)))

    async def round(self) -> None:
        config = self.config
        leases = await self.api.list(f"{LEASE_SET_LABEL}={config.name_prefix}")
        now = self.clock()
        by_name = {lease["metadata"]["name"]: lease for lease in leases}
        try:
            await self._renew_member(by_name.get(config.member_lease()))
        except kubernetes.client.ApiException as error:  # the shard renewals below matter more; next round retries
            log.warning("member Lease renewal failed: HTTP %s %s", error.status, error.reason)
        for lease_name, lease in by_name.items():
            self._observe(lease_name, lease, now)
        members = sorted(
            {
                (lease.get("spec") or {}).get("holderIdentity") or ""
                for lease in leases
                if (lease["metadata"].get("labels") or {}).get(LEASE_KIND_LABEL) == "member"
                and not self._expired(lease["metadata"]["name"], now)
            }
            - {""}
            | {config.identity}
        )
        self.assignment = assign(config.shards, members)
        shard_metrics.members.set(len(members))
        work = []
        for shard, owner in self.assignment.items():
            if shard in self._releasing:
                continue  # a hand-over in progress finishes first
            lease = by_name.get(config.shard_lease(shard))
            holder = ((lease or {}).get("spec") or {}).get("holderIdentity") or ""
            mine = holder == config.identity and shard in self._valid_until
            if owner == config.identity:
                if lease is None:
                    work.append(self._acquire(shard, None))
                elif mine:
                    work.append(self._renew(shard, lease))
                elif not holder or holder == config.identity or self._expired(config.shard_lease(shard), now):
                    work.append(self._acquire(shard, lease))
            elif mine and shard not in self._releasing:
                self._start_release(shard, lease)
        await asyncio.gather(*work)
        held = self.held()
        for shard in range(config.shards):
            shard_metrics.shard_held.labels(str(shard)).set(1 if shard in held else 0)

    def _observe(self, lease_name: str, lease: dict[str, Any], now: float) -> None:
        spec = lease.get("spec") or {}
        version = lease["metadata"].get("resourceVersion", "")
        previous = self._observed.get(lease_name)
        if previous is None or previous.version != version:
            duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
            self._observed[lease_name] = _Observed(spec.get("holderIdentity") or "", version, now, duration)

    def _expired(self, lease_name: str, now: float) -> bool:
        observed = self._observed.get(lease_name)
        return observed is None or not observed.holder or now - observed.seen_at > observed.duration

    def _spec(self, transitions: int, acquired: str | None) -> dict[str, Any]:
        now = micro_time(datetime.now(UTC))
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": int(self.config.lease_duration),
            "renewTime": now,
            "acquireTime": acquired or now,
            "leaseTransitions": transitions,
        }

    def _labels(self, kind: str) -> dict[str, str]:
        return {LEASE_SET_LABEL: self.config.name_prefix, LEASE_KIND_LABEL: kind}

    async def _renew_member(self, current: dict[str, Any] | None) -> None:
        """Our member Lease, renewed with the resourceVersion just listed (the API server requires one)."""
        name = self.config.member_lease()
        metadata: dict[str, Any] = {"name": name, "namespace": self.config.namespace, "labels": self._labels("member")}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata}
        body["spec"] = self._spec(0, None)
        if current is None:
            await self.api.create(body)
        else:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self.api.replace(body)

    async def _acquire(self, shard: int, lease: dict[str, Any] | None) -> None:
        started = self.clock()
        name = self.config.shard_lease(shard)
        metadata: dict[str, Any] = {"name": name, "namespace": self.config.namespace, "labels": self._labels("shard")}
        spec = (lease or {}).get("spec") or {}
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if spec.get("holderIdentity") else 0)
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata}
        body["spec"] = self._spec(transitions, None)
        try:
            if lease is None:
                await self.api.create(body)
            else:
                metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
                await self.api.replace(body)
        except kubernetes.client.ApiException as error:
            if error.status in (404, 409):
                return  # someone else was faster; next round sees who
            raise
        self._hold(shard, started)
        shard_metrics.acquisitions.inc()
        log.info("shard=%s acquired by %s (transitions=%s)", shard, self.config.identity, transitions)

    async def _renew(self, shard: int, lease: dict[str, Any]) -> None:
        started = self.clock()
        body = dict(lease)
        body["spec"] = self._spec(int((lease.get("spec") or {}).get("leaseTransitions") or 0), None)
        body["spec"]["acquireTime"] = (lease.get("spec") or {}).get("acquireTime") or body["spec"]["renewTime"]
        try:
            await self.api.replace(body)
        except kubernetes.client.ApiException as error:
            if error.status in (404, 409):
                self._drop(shard, "its Lease changed under us")
                return
            raise
        self._hold(shard, started)

    def _hold(self, shard: int, request_started: float) -> None:
        self._valid_until[shard] = request_started + self.config.renew_deadline
        if self.may_write(shard):
            self._owned[shard].set()
        else:  # the renewal itself took longer than the renew deadline: it proves nothing
            self._drop(shard, "renewal answered after the renew deadline")

    def _drop(self, shard: int, why: str) -> None:
        if self._valid_until.pop(shard, None) is not None:
            log.warning("shard=%s no longer held by %s: %s", shard, self.config.identity, why)
        self._owned[shard].clear()

    def _expire(self) -> None:
        now = self.clock()
        for shard, until in list(self._valid_until.items()):
            if now >= until:
                shard_metrics.lapses.inc()
                self._drop(shard, "renew deadline passed without a successful renewal")

    def _start_release(self, shard: int, lease: dict[str, Any] | None) -> None:
        self._releasing.add(shard)  # may_write is False from here on
        self._owned[shard].clear()
        task = asyncio.create_task(self._release(shard, lease))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, shard: int, lease: dict[str, Any] | None) -> None:
        """Hand a shard over: no new writes, in-flight ticks finish, then the Lease says nobody holds it."""
        try:
            deadline = time.monotonic() + self.config.renew_deadline / 2
            while self._in_flight[shard] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if lease is not None and self._in_flight[shard] == 0:
                body = dict(lease)
                body["spec"] = {**(lease.get("spec") or {}), "holderIdentity": None}
                with contextlib.suppress(kubernetes.client.ApiException):
                    await self.api.replace(body)
                log.info("shard=%s released by %s", shard, self.config.identity)
            # a release that could not drain in time lets the Lease lapse instead (lease_duration later)
        finally:
            self._valid_until.pop(shard, None)
            self._releasing.discard(shard)
            shard_metrics.releases.inc()

    async def release_all(self) -> None:
        """On shutdown: free every held shard and the member Lease so the others take over at once."""
        held = self.held()
        for shard in held:
            self._releasing.add(shard)
            self._owned[shard].clear()
        listed = await self.api.list(f"{LEASE_SET_LABEL}={self.config.name_prefix}")
        leases = {lease["metadata"]["name"]: lease for lease in listed}
        await asyncio.gather(
            *(self._release(shard, leases.get(self.config.shard_lease(shard))) for shard in held),
            return_exceptions=True,
        )
        member = leases.get(self.config.member_lease())
        if member is not None:  # an empty holder is no member: the others rebalance without waiting for expiry
            member["spec"] = {**(member.get("spec") or {}), "holderIdentity": None}
            with contextlib.suppress(kubernetes.client.ApiException):
                await self.api.replace(member)

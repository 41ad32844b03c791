"""Shard assignment and the Lease protocol, with an in-memory Lease store and a hand-driven clock."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from typing import Any

import kubernetes
import kubernetes.aio.client
import pytest

from mlrollouts.controller import shard_metrics
from mlrollouts.controller.leases import ShardingConfig, assign, shard_of
from mlrollouts.controller.sharding import LeaseLost, ShardManager
from mlrollouts.controller.write_guard import GuardedObjects
from mlrollouts.routing.kube import ApiRequestFailed, KubeObjects, ObjectConflict

SHARDS = 12


class FakeLeases:
    """Create / replace with resourceVersion checks (422 without one, 409 if stale), as kube-apiserver does for
    Leases; `down` fails every call."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def _bump(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.items[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    def _check(self) -> None:
        if self.down:
            raise kubernetes.client.ApiException(status=503)

    async def list(self, label_selector: str) -> list[dict[str, Any]]:
        self._check()
        key, value = label_selector.split("=")
        return [copy.deepcopy(i) for i in self.items.values() if i["metadata"]["labels"].get(key) == value]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if body["metadata"]["name"] in self.items:
            raise kubernetes.client.ApiException(status=409)
        return self._bump(body)

    async def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        current = self.items.get(body["metadata"]["name"])
        if current is None:
            raise kubernetes.client.ApiException(status=404)
        expected = body["metadata"].get("resourceVersion")
        if not expected:  # kube-apiserver: "metadata.resourceVersion: must be specified for an update"
            raise kubernetes.client.ApiException(status=422)
        if expected != current["metadata"]["resourceVersion"]:
            raise kubernetes.client.ApiException(status=409)
        return self._bump(body)

    def holders(self) -> Counter[str]:
        return Counter(i["spec"].get("holderIdentity") or "" for name, i in self.items.items() if "-shard-" in name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager(identity: str, leases: FakeLeases, clock: Clock) -> ShardManager:
    return ShardManager(ShardingConfig(identity, "ops", shards=SHARDS), leases, clock)  # type: ignore[arg-type]


async def rounds(managers: list[ShardManager], clock: Clock, count: int = 3) -> None:
    for _ in range(count):
        for each in managers:
            await each.round()
            each._expire()
        await asyncio.sleep(0)  # releases run as tasks
        await asyncio.sleep(0)
        clock.now += 2.0


def test_assignment_is_balanced_deterministic_and_mostly_stable() -> None:
    three = assign(SHARDS, ["a", "b", "c"])
    assert Counter(three.values()) == {"a": 4, "b": 4, "c": 4}
    assert assign(SHARDS, ["c", "a", "b"]) == three  # every replica computes the same answer
    four = assign(SHARDS, ["a", "b", "c", "d"])
    assert Counter(four.values()) == {"a": 3, "b": 3, "c": 3, "d": 3}
    moved = sum(three[shard] != four[shard] for shard in range(SHARDS))
    assert moved < SHARDS / 2, f"{moved} of {SHARDS} shards moved when one member joined"


def test_shard_of_is_stable_and_spreads() -> None:
    assert shard_of("team-a", "churn", 16) == shard_of("team-a", "churn", 16)
    counts = Counter(shard_of("default", f"exp-{i}", 16) for i in range(1600))
    assert len(counts) == 16 and min(counts.values()) > 50


def test_rejects_lease_timings_that_cannot_protect_a_write() -> None:
    with pytest.raises(ValueError, match="renew deadline < lease duration"):
        ShardingConfig("a", "ops", lease_duration=10, renew_deadline=10)


async def test_replicas_split_the_shards_and_a_joiner_gets_its_share() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = manager("a", leases, clock), manager("b", leases, clock)
    await rounds([a, b], clock)
    assert sorted(a.held() + b.held()) == list(range(SHARDS)) and len(a.held()) == len(b.held()) == 6
    c = manager("c", leases, clock)
    await rounds([a, b, c], clock)
    assert [len(m.held()) for m in (a, b, c)] == [4, 4, 4]
    assert sorted(a.held() + b.held() + c.held()) == list(range(SHARDS))
    assert leases.holders() == {"a": 4, "b": 4, "c": 4}


async def test_a_dead_replicas_shards_move_only_after_the_lease_duration() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = manager("a", leases, clock), manager("b", leases, clock)
    await rounds([a, b], clock)
    dead = set(b.held())
    for _ in range(6):  # b is gone: 12 s of rounds without it, less than the 15 s lease duration
        await a.round()
        clock.now += 2.0
    assert not dead & set(a.held()), "took a shard whose Lease had not expired"
    for _ in range(3):
        await a.round()
        clock.now += 2.0
    assert a.held() == list(range(SHARDS))


async def test_a_replica_that_cannot_renew_stops_writing_before_anyone_may_take_over() -> None:
    leases, clock = FakeLeases(), Clock()
    a = manager("a", leases, clock)
    await rounds([a], clock, 1)
    assert a.owns("default", "exp-1")
    leases.down = True  # partitioned from the API server
    clock.now += a.config.renew_deadline
    sent: list[str] = []

    class Inner:
        async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            sent.append("patch")
            return {}

    objects = GuardedObjects(Inner(), a)  # type: ignore[arg-type]
    with a.writing_for("default", "exp-1"), pytest.raises(LeaseLost):
        await objects.patch("v1", "x", "default", "exp-1", {})
    assert sent == [] and isinstance(LeaseLost("x"), ObjectConflict)
    assert not a.owns("default", "exp-1")


async def test_a_graceful_stop_hands_the_shards_over_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = manager("a", leases, clock), manager("b", leases, clock)
    await rounds([a, b], clock)
    await b.release_all()
    assert b.held() == []
    await rounds([a], clock, 1)  # 2 s later, far less than the 15 s a crash would cost
    assert a.held() == list(range(SHARDS))


async def test_a_write_that_waited_past_the_renew_deadline_is_stopped_before_it_is_sent() -> None:
    leases, clock = FakeLeases(), Clock()
    a = manager("a", leases, clock)
    await rounds([a], clock, 1)
    configuration = kubernetes.aio.client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # nothing listens: a write that were sent would fail differently
    kube = KubeObjects(configuration)
    kube.write_check = a.check_write
    refused = shard_metrics.write_conflicts.labels("configmaps")._value.get()
    with a.writing_for("default", "exp-1"):
        GuardedObjects(kube, a)._check()  # valid when the tick decided to write...
        clock.now += a.config.renew_deadline  # ...then the Lease lapsed while the request waited (a token refresh)
        with pytest.raises(LeaseLost):
            await GuardedObjects(kube).patch("v1", "configmaps", "default", "exp-1", {"data": {}})
    # not sent, so not a refusal: the refusal counter stays for the API server's answers
    assert shard_metrics.write_conflicts.labels("configmaps")._value.get() == refused


@pytest.mark.parametrize(
    ("message", "conflict"),
    [
        ("PATCH failed with HTTP 422: the JSON patch test operation failed: resourceVersion", True),
        ('PATCH failed with HTTP 422: ModelExperiment.mlrollouts.dev "e" is invalid: [status.x: Invalid value]', False),
    ],
)
async def test_only_a_failed_resource_version_test_counts_as_a_refusal(message: str, conflict: bool) -> None:
    """A schema violation is also a 422 on a guarded patch; counting it as a refused write would hide a bug."""
    kube = KubeObjects(kubernetes.client.Configuration())

    async def refuse(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ApiRequestFailed(message, 422)

    kube._call = refuse  # type: ignore[method-assign]
    guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"}]
    with pytest.raises(ObjectConflict if conflict else ApiRequestFailed) as raised:
        await GuardedObjects(kube).patch("v1", "x", "default", "e", guard, "json", subresource="status")
    assert isinstance(raised.value, ObjectConflict) is conflict


async def test_an_experiment_whose_shard_lapsed_waits_instead_of_spinning() -> None:
    leases, clock = FakeLeases(), Clock()
    a = manager("a", leases, clock)
    await rounds([a], clock, 1)
    clock.now += a.config.renew_deadline  # lapsed, and no round has cleared the shard's event yet
    assert not a.owns("default", "exp-1")
    never = asyncio.Event()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await a.wait_owned("default", "exp-1", never)
    assert loop.time() - began >= a.config.retry_period / 4 * 0.9  # it slept: the caller's loop cannot busy-wait

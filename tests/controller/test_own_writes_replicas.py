"""own_writes with active-active replicas: a status-only event of an experiment this replica does not own
(another replica's status write) skips kopf's processing like one of our own writes; every event that changes
what kopf acts on, or arrives while kopf still has work pending for the object, goes through kopf; and a replica
that gains the experiment's shard reconciles it on the last body the watch delivered, without a watch event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits.aioenums import FlagSetter
from own_writes_support import Memories, body, setup
from test_sharding import FakeLeases

from mlrollouts.controller import handlers
from mlrollouts.controller.leases import ShardingConfig
from mlrollouts.controller.sharding import ShardManager


def never(namespace: str, name: str) -> bool:
    return False


def test_another_replicas_status_write_of_an_experiment_not_owned_skips_kopf() -> None:
    own, inner, memory, deliver = setup(written=set(), owns=never)
    deliver(body("1"), "ADDED")
    deliver(body("2"))
    deliver(body("3", phase="Paused"))
    assert inner.seen == ["1"] and own.skipped == 2
    assert memory.live is not None and memory.live.meta["resourceVersion"] == "3"
    assert memory.live["status"]["phase"] == "Paused"


def test_someone_elses_status_write_of_an_owned_experiment_goes_through_kopf() -> None:
    own, inner, _, deliver = setup(written=set(), owns=lambda namespace, name: True)
    deliver(body("1"), "ADDED")
    deliver(body("2"))
    assert inner.seen == ["1", "2"] and own.skipped == 0


def _stand_in_claim(raw: dict[str, Any]) -> dict[tuple[str, ...], tuple[str, ...]]:
    """The index entry (claims_of's own cases are in test_routing_record): a terminal phase ends the claim."""
    return {} if raw["status"]["phase"] == "Succeeded" else {("vs",): ("1",)}


def _changed(change: str) -> dict[str, Any]:
    raw = body("2")
    meta = raw["metadata"]
    if change == "spec":
        raw["spec"]["strategy"] = "canary"
    elif change == "label":
        meta["labels"] = {"team": "a"}
    elif change == "annotation":
        meta["annotations"]["mlrollouts.dev/action"] = "promote"
    elif change == "finalizer":
        meta["finalizers"] = []
    elif change == "deletionTimestamp":
        meta["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    elif change == "generation":
        meta["generation"] = 2
    elif change == "index entry":
        raw["status"]["phase"] = "Succeeded"  # terminal: the claim on the routing object ends
    return raw


@pytest.mark.parametrize(
    "change", ["spec", "label", "annotation", "finalizer", "deletionTimestamp", "generation", "index entry"]
)
def test_a_change_kopf_acts_on_goes_through_kopf_though_not_owned(change: str) -> None:
    own, inner, _, deliver = setup(written=set(), claims=_stand_in_claim, owns=never)
    deliver(body("1"), "ADDED")
    deliver(_changed(change))
    assert inner.seen == ["1", "2"] and own.skipped == 0


def test_a_deleted_event_goes_through_kopf_though_not_owned() -> None:
    own, inner, _, deliver = setup(written=set(), owns=never)
    deliver(body("1"), "ADDED")
    deliver(body("2"), "DELETED")
    assert inner.seen == ["1", "2"] and own.skipped == 0


def _deleting(version: str) -> dict[str, Any]:
    raw = body(version)
    raw["metadata"]["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    return raw


def _retrying(version: str) -> dict[str, Any]:
    """kopf's progress record of a handler it retries later (TemporaryError), in the progress storage's prefix."""
    raw = body(version)
    raw["metadata"]["annotations"]["mlrollouts.dev/give_traffic_back"] = '{"retries": 1, "delayed": "x"}'
    return raw


@pytest.mark.parametrize("state", [_deleting, _retrying], ids=["deletion ongoing", "a handler retried later"])
@pytest.mark.parametrize("owns", [never, None], ids=["not owned", "standalone, own write"])
def test_while_kopf_has_work_pending_every_event_goes_through_kopf(
    state: Callable[[str], dict[str, Any]], owns: Callable[[str, str], bool] | None
) -> None:
    """kopf waits for such work by sleeping until the object's next event (or its delay) and acting then: a
    skipped event would cut the sleep short with nothing acting after it (a retry or the finalizer lost)."""
    own, inner, _, deliver = setup(written={"2", "3"}, owns=owns)
    deliver(state("1"), "ADDED")
    deliver(state("2"))
    deliver(state("3"))
    assert inner.seen == ["1", "2", "3"] and own.skipped == 0


@pytest.mark.parametrize("owns", [never, None], ids=["not owned", "standalone, own write"])
def test_after_a_failed_processing_the_next_event_goes_through_kopf(owns: Callable[[str, str], bool] | None) -> None:
    """kopf swallowed an error (an API call that failed, its patch maybe not applied) and throttles: the next event
    is kopf's chance to do it again."""
    own, inner, memory, deliver = setup(written={"2", "3"}, owns=owns)
    deliver(body("1"), "ADDED")
    memory.error_throttler.source_of_delays = iter([1.0])
    deliver(body("2"))
    memory.error_throttler.source_of_delays = None  # kopf reset it: that processing succeeded
    deliver(body("3"))
    assert inner.seen == ["1", "2"] and own.skipped == 1


def test_a_pending_patch_or_no_live_body_goes_through_kopf_though_not_owned() -> None:
    own, inner, memory, deliver = setup(written=set(), owns=never)
    deliver(body("1"), "ADDED")
    memory.remaining_patch = {"metadata": {"finalizers": []}}
    deliver(body("2"))
    memory.remaining_patch, memory.live = None, None
    deliver(body("3"))
    assert inner.seen == ["1", "2", "3"] and own.skipped == 0


def test_a_replica_that_gains_the_experiment_reconciles_it_on_the_last_skipped_body() -> None:
    """Ownership moves with the shard Leases, not with watch events: the parked analysis loop is woken by the
    Lease round that acquires the shard, and reads kopf's live body, which the skipped events kept current."""
    shards = ShardManager(ShardingConfig("b", "ops", shards=4), FakeLeases())  # type: ignore[arg-type]
    own, inner, memory, deliver = setup(written=set(), owns=shards.owns)
    deliver(body("1"), "ADDED")
    assert memory.live is not None
    ticked: list[str] = []

    async def tick(runtime: Any, namespace: str, name: str, claims: Any, live: Any = None) -> float | None:
        ticked.append(live.meta["resourceVersion"])
        return None  # terminal: the loop returns

    async def run() -> None:
        memo = kopf.Memo(runtime=_Runtime(), shards=shards)
        stopped: FlagSetter[Any] = FlagSetter()
        loop = asyncio.ensure_future(
            handlers.analysis_loop(
                body=memory.live, meta=memory.live.meta, stopped=stopped.async_waiter, memo=memo, routing_claims={}
            )
        )
        process = own.wrap(inner.process)
        for version in ("2", "3"):  # another replica's ticks: skipped, the live body refreshed
            await process(raw_event={"type": "MODIFIED", "object": body(version)}, memories=Memories(memory))
            await asyncio.sleep(0.01)
        assert ticked == [] and own.skipped == 2
        await shards.round()  # the only member: every shard assigned to it and acquired
        await asyncio.wait_for(loop, 10)

    original, handlers._tick = handlers._tick, tick  # type: ignore[assignment]
    try:
        asyncio.run(run())
    finally:
        handlers._tick = original  # type: ignore[assignment]
    assert ticked == ["3"] and inner.seen == ["1"]


class _Runtime:
    def forget(self, namespace: str, name: str) -> None:
        pass

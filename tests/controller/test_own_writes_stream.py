"""own_writes' filter of kopf's watch stream: a no-op status write of an object kopf is idle on never reaches
kopf's queueing (no queue put, no worker woken); an object with an event still queued or in processing gets every
event, and the processor's short-circuit decides."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import kopf
from own_writes_support import Memories, body, setup

EXPERIMENTS, OTHER = "modelexperiments", "leases"


def stream_of(events: list[Any]) -> Any:
    async def infinite_watch(*, resource: str, **_: Any) -> AsyncIterator[Any]:
        for event in events:
            yield event

    return infinite_watch


def modified(version: str, **changes: Any) -> dict[str, Any]:
    return {"type": "MODIFIED", "object": body(version, **changes)}


def run(events: list[Any], written: set[str], resource: str = EXPERIMENTS, process_each: bool = True) -> Any:
    """The filtered stream as kopf's watcher reads it; each event it yields is processed at once (kopf idle
    between events) or, with `process_each=False`, left queued."""
    own, inner, memory, _ = setup(written=written)
    process = own.wrap(inner.process)
    passed: list[Any] = []

    async def watch() -> None:
        await process(raw_event={"type": "ADDED", "object": body("1")}, memories=Memories(memory))
        stream = own.filter(stream_of(events), lambda resource: resource == EXPERIMENTS)
        async for event in stream(resource=resource, namespace="default"):
            passed.append(event)
            if process_each and isinstance(event, dict) and event.get("type") != "BOOKMARK":
                await process(raw_event=event, memories=Memories(memory))

    asyncio.run(watch())
    return own, inner, memory, passed


def test_a_no_op_event_of_an_idle_object_never_reaches_kopfs_queue() -> None:
    own, inner, memory, passed = run([modified("2"), modified("3", strategy="canary")], written={"2", "3"})
    assert [event["object"]["metadata"]["resourceVersion"] for event in passed] == ["3"]
    assert inner.seen == ["1", "3"] and own.skipped_early == 1 and own.skipped == 0
    assert memory.live is not None and memory.live.meta["resourceVersion"] == "2"  # refreshed then, before "3"


def test_an_object_with_an_event_queued_gets_every_event() -> None:
    """kopf may be sleeping on the queued event's delay: the next one must reach it to cut the sleep short."""
    own, _, _, passed = run([modified("2", strategy="canary"), modified("3", strategy="canary")], {"3"}, False)
    assert len(passed) == 2 and own.skipped_early == 0


def test_bookmarks_pass_and_do_not_count_as_queued() -> None:
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
    own, inner, _, passed = run(["LISTED", bookmark, modified("2")], written={"2"})
    assert passed == ["LISTED", bookmark] and own.skipped_early == 1 and inner.seen == ["1"]


def test_other_resources_pass_untouched() -> None:
    own, _, _, passed = run([modified("2")], written={"2"}, resource=OTHER)
    assert len(passed) == 1 and own.skipped_early == 0


def through_filter(own: Any, events: list[Any]) -> list[Any]:
    """The events of `events` that own's stream filter lets through to kopf."""
    passed: list[Any] = []

    async def watch() -> None:
        async for event in own.filter(stream_of(events), lambda resource: True)(resource=EXPERIMENTS):
            passed.append(event)

    asyncio.run(watch())
    return passed


def test_an_event_that_cannot_be_checked_goes_to_kopf() -> None:
    """An error in the check must not end kopf's watch stream."""
    own, _, _, deliver = setup(written={"2"})
    deliver(body("1"), "ADDED")  # processed in full: remembered, kopf's memories known

    def broken(raw: Any) -> Any:
        raise ValueError("a body the index entry cannot be computed for")

    own._claims = broken  # type: ignore[method-assign]
    passed = through_filter(own, [modified("2")])
    assert len(passed) == 1 and own.skipped_early == 0


def test_before_kopf_processed_anything_every_event_passes() -> None:
    own, _, _, _ = setup(written={"2"})
    passed = through_filter(own, [modified("2")])
    assert len(passed) == 1 and own.skipped_early == 0


def test_kopfs_own_watcher_reads_the_filtered_stream_and_queues_only_what_passes() -> None:
    """run.short_circuited in front of kopf's real queueing.watcher: kopf looks the stream and the processor up
    as module attributes, and its worker gets only the events that passed (a kopf that stopped doing so would
    leave every event to the processor's short-circuit: slower, never wrong)."""
    from kopf._cogs.clients import watching
    from kopf._cogs.structs import references
    from kopf._core.reactor import processing, queueing

    from mlrollouts import GROUP, PLURAL
    from mlrollouts.controller.run import short_circuited

    own, inner, memory, _ = setup(written={"2", "3"})
    events = [{"type": "ADDED", "object": body("1")}, modified("2"), modified("3", strategy="canary")]

    async def api_stream(**_: Any) -> AsyncIterator[Any]:
        for event in events:
            yield event
            await asyncio.sleep(0.05)  # the worker processes it meanwhile: kopf is idle on the object

    async def watch() -> None:
        processor = functools.partial(processing.process_resource_event, memories=Memories(memory), memobase=None)
        resource = references.Resource(group=GROUP, version="v1alpha1", plural=PLURAL)
        await queueing.watcher(
            namespace="default", settings=kopf.OperatorSettings(), resource=resource, processor=processor
        )

    original = watching.infinite_watch
    watching.infinite_watch = api_stream
    original_process = processing.process_resource_event
    processing.process_resource_event = inner.process  # type: ignore[assignment]
    try:
        with short_circuited(own):
            asyncio.run(watch())
    finally:
        watching.infinite_watch, processing.process_resource_event = original, original_process  # type: ignore[assignment]
    assert inner.seen == ["1", "3"] and own.skipped_early == 1 and own.skipped == 0

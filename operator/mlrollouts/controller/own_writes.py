"""Watch events of our own status writes, handled before kopf's per-event processing instead of by it.

Every tick's status write comes back on kopf's watch. kopf then builds and diffs the object's essence, matches
every handler, re-runs the index, builds three loggers and a patch: a sixth of the operator's CPU per tick in a
py-spy profile at 300 experiments, to conclude each time that nothing is to be done. For such an event the
outcome is known without it: nothing kopf looks at changed since the last event it processed in full (the
spec, the metadata but resourceVersion and managedFields), the routing index's entry is the same, and no patch
of kopf's is pending. Only the body the experiment's analysis loop reads (kopf's `live` body) is brought up to
date, as kopf does first thing. Any other event, or one of ours that changed the index entry (a split applied,
a terminal phase), goes through kopf whole.

Active-active: every replica watches every experiment, so each also receives the status writes of the experiments
other replicas own. For such an event kopf concludes the same "nothing to do" (status is in no handler's essence;
the parked analysis loop waits for its shard, not for events), so it is skipped under the same conditions,
whoever wrote it: ownership moves with the shard Leases (sharding.wait_owned), never with a watch event.

Never skipped, whoever wrote it, while kopf still has work pending for the object, which it does by sleeping
until the object's next event (or a delay) and acting then; a skipped event would cut that sleep short with
nothing acting after it: a deletion in progress (daemons stopping, on-delete handlers retried), a handler's
progress record (a retry to come), an error kopf swallowed and throttles (its patch maybe never applied).

The same check runs earlier too, in kopf's watch stream (`filter`), for an object with no event queued or in
processing: a skipped event then never reaches kopf's queueing (a queue put, a worker task spawned or woken).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from mlrollouts import GROUP
from mlrollouts.controller.reading import ACTION_ANNOTATION

log = logging.getLogger(__name__)
VOLATILE = ("resourceVersion", "managedFields")
"""Metadata a status write changes; kopf's handlers and storages read neither."""

SEEN_SIZE = 20_000
"""Objects remembered (most recent first kept): one deleted while the watch was down sends no DELETED event."""
KOPF_PREFIX = f"{GROUP}/"
"""run.configure's prefix of kopf's annotations: its diff-base, handler progress records and touch-dummy."""
SETTLED = frozenset({f"{GROUP}/last-handled-configuration", f"{GROUP}/kopf-managed", ACTION_ANNOTATION})
"""The prefixed annotations present when kopf has nothing pending (its diff-base, the marker kopf's storages add
beside it, a user's action): any other is kopf's progress record of a handler, or its touch-dummy."""
Processor = Callable[..., Awaitable[str | None]]


class OwnWrites:
    """Which events to short-circuit: `wrote(namespace, name, version)` says whether a status write of this
    process produced that version; `claims(body)` is the routing index's entry for a body; `owns(namespace,
    name)` whether this replica holds the experiment's shard (None: standalone, every experiment is ours)."""

    def __init__(
        self,
        wrote: Callable[[str, str, str], bool],
        claims: Callable[[Mapping[str, Any]], object],
        owns: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._wrote, self._claims, self._owns = wrote, claims, owns
        self._seen: OrderedDict[str, tuple[dict[str, Any], Any, object]] = OrderedDict()
        """uid → (stable metadata, spec, index entry) of the last event kopf processed in full."""
        self._queued: dict[str, int] = {}
        """uid → events the watch filter passed on to kopf's queue that kopf has not finished processing."""
        self._memories: tuple[Any, Any] | None = None
        """kopf's per-object memories and memo base, as its processor is given them (None before the first)."""
        self.skipped = self.skipped_early = 0

    def remember(self, raw_event: Mapping[str, Any]) -> None:
        """After kopf processed an event in full: what a later event of ours is compared with."""
        body = raw_event.get("object") or {}
        uid = (body.get("metadata") or {}).get("uid")
        if not uid:
            return
        if raw_event.get("type") == "DELETED":
            self._seen.pop(uid, None)
        else:
            self._seen[uid] = (_stable(body), body.get("spec"), self._claims(body))
            self._seen.move_to_end(uid)
            if len(self._seen) > SEEN_SIZE:
                self._seen.popitem(last=False)  # forgotten: its next event goes through kopf, nothing worse

    def is_noop(self, raw_event: Mapping[str, Any]) -> bool:
        """A status write, ours or (to an experiment another replica owns) anyone's, that changed nothing kopf
        acts on and came while kopf had nothing pending in the body (see the module's docstring)."""
        if raw_event.get("type") != "MODIFIED":
            return False
        body = raw_event.get("object") or {}
        meta = body.get("metadata") or {}
        seen = self._seen.get(meta.get("uid") or "")
        version = meta.get("resourceVersion")
        if seen is None or not version or meta.get("deletionTimestamp") or _kopf_pending(meta):
            return False
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        if not self._wrote(namespace, name, version) and (self._owns is None or self._owns(namespace, name)):
            return False
        stable, spec, claims = seen
        return body.get("spec") == spec and _stable(body) == stable and self._claims(body) == claims

    async def _short_circuit(self, raw_event: Mapping[str, Any], memories: Any, memobase: Any) -> bool:
        """Whether the event is skipped; if so, kopf's live body is brought up to date as kopf does first thing."""
        if not self.is_noop(raw_event):
            return False
        memory = await memories.recall(raw_event["object"], memobase=memobase)
        live = memory.daemons_memory.live_fresh_body
        if live is None or memory.remaining_patch or not _not_throttled(memory):
            return False
        live._replace_with(raw_event["object"])
        return True

    def wrap(self, process: Processor) -> Processor:
        """kopf's process_resource_event, short-circuited for no-op status writes."""

        @functools.wraps(process)
        async def process_resource_event(*, raw_event: Mapping[str, Any], **kwargs: Any) -> str | None:
            memories, memobase = kwargs["memories"], kwargs.get("memobase")
            self._memories = memories, memobase
            try:
                if await self._short_circuit(raw_event, memories, memobase):
                    self.skipped += 1
                    return None
                result = await process(raw_event=raw_event, **kwargs)
                self.remember(raw_event)
                return result
            finally:
                self._processed(raw_event)

        return process_resource_event

    def filter(self, stream: Callable[..., AsyncIterator[Any]], accepts: Callable[[Any], bool]) -> Any:
        """kopf's watch stream (watching.infinite_watch) without the no-op events of objects kopf is idle on, for
        the resources `accepts` says: kopf's queueing (a queue, a worker task per object, woken per event) is
        skipped too. An object with an event queued or in processing gets every event (kopf may be sleeping
        for a delay that the event must cut short); the processor's short-circuit then decides."""

        @functools.wraps(stream)
        async def infinite_watch(*, resource: Any, **kwargs: Any) -> AsyncIterator[Any]:
            filtering = accepts(resource)
            async for event in stream(resource=resource, **kwargs):
                if filtering and isinstance(event, dict) and event.get("type") != "BOOKMARK":
                    uid = ((event.get("object") or {}).get("metadata") or {}).get("uid")
                    if uid and not self._queued.get(uid) and await self._skips_early(event):
                        self.skipped_early += 1
                        continue
                    if uid:
                        self._queued[uid] = self._queued.get(uid, 0) + 1
                yield event

        return infinite_watch

    async def _skips_early(self, event: Mapping[str, Any]) -> bool:
        """The short-circuit in the watch stream, which must not fail: on any error the event goes to kopf."""
        if self._memories is None:
            return False
        try:
            return await self._short_circuit(event, *self._memories)
        except Exception:
            log.exception("own_writes: an event could not be checked in the watch stream; kopf processes it")
            return False

    def _processed(self, raw_event: Mapping[str, Any]) -> None:
        uid = ((raw_event.get("object") or {}).get("metadata") or {}).get("uid") or ""
        left = self._queued.get(uid, 0) - 1
        if left > 0:
            self._queued[uid] = left
        else:
            self._queued.pop(uid, None)


def _stable(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    stable = {key: value for key, value in meta.items() if key not in VOLATILE}
    stable["apiVersion"], stable["kind"] = body.get("apiVersion"), body.get("kind")
    return stable


def _kopf_pending(meta: Mapping[str, Any]) -> bool:
    """kopf's own state in the body says it has work to come: a handler's progress record, a touch-dummy."""
    return any(key.startswith(KOPF_PREFIX) and key not in SETTLED for key in meta.get("annotations") or ())


def _not_throttled(memory: Any) -> bool:
    """kopf's error throttler is idle: its last processing of the object did not fail (kopf resets it on the next
    one that succeeds). Looked up leniently: a kopf that renamed these fields gets every event (and these
    tests fail), never a skip it has not vouched for."""
    fields = getattr(getattr(memory, "error_throttler", None), "__dict__", {})
    return "source_of_delays" in fields and fields["source_of_delays"] is None and fields.get("active_until") is None

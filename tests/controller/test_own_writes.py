"""own_writes: a watch event of our own status write that changed nothing kopf acts on skips kopf's processing
but still brings the analysis loop's live body up to date; every other event goes through kopf."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

import kopf

from mlrollouts.controller import own_writes
from mlrollouts.controller.handlers import claims_of
from mlrollouts.controller.own_writes import OwnWrites


def body(version: str, phase: str = "Progressing", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlrollouts.dev/v1alpha1",
        "kind": "ModelExperiment",
        "metadata": {
            "name": "exp",
            "namespace": "default",
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": version,
            "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"],
            "managedFields": [{"manager": "mlrollouts", "time": version}],
        },
        "spec": {"strategy": "abTest", "traffic": {"provider": "gateway"}, **spec},
        "status": {"phase": phase, "lastAnalysisAt": version},
    }


@dataclass
class Memory:
    live: kopf.Body
    remaining_patch: dict[str, Any] | None = None

    @property
    def daemons_memory(self) -> Any:
        return self

    @property
    def live_fresh_body(self) -> kopf.Body:
        return self.live


@dataclass
class Memories:
    memory: Memory

    async def recall(self, raw_body: Any, **_: Any) -> Memory:
        return self.memory


@dataclass
class Kopf:
    """kopf's processor, counting the events it was given."""

    seen: list[str] = field(default_factory=list)

    async def process(self, *, raw_event: dict[str, Any], **_: Any) -> str | None:
        self.seen.append(raw_event["object"]["metadata"]["resourceVersion"])
        return None


def setup(written: set[str], claims: Any = claims_of) -> tuple[OwnWrites, Kopf, Memory, Any]:
    own = OwnWrites(
        lambda namespace, name, version: (namespace, name) == ("default", "exp") and version in written, claims
    )
    inner = Kopf()
    memory = Memory(kopf.Body(body("1")))
    process = own.wrap(inner.process)

    def deliver(raw: dict[str, Any], kind: str = "MODIFIED") -> None:
        event = {"type": kind, "object": raw}
        asyncio.run(process(raw_event=event, memories=Memories(memory), memobase=None))

    return own, inner, memory, deliver


def test_own_status_write_skips_kopf_and_updates_the_live_body() -> None:
    own, inner, memory, deliver = setup(written={"2"})
    deliver(body("1"), "ADDED")
    deliver(body("2", phase="Progressing"))
    assert inner.seen == ["1"]
    assert own.skipped == 1
    assert memory.live.meta["resourceVersion"] == "2"
    assert memory.live["status"]["lastAnalysisAt"] == "2"


def test_events_that_are_not_ours_or_change_more_than_status_go_through_kopf() -> None:
    own, inner, _, deliver = setup(written={"3", "4", "5", "6"})
    deliver(body("1"), "ADDED")
    deliver(body("2"))  # not written by us (kubectl, another replica)
    deliver(body("3", strategy="canary"))  # ours, but the spec changed between (batched by kopf)
    edited = body("4", strategy="canary")
    edited["metadata"]["annotations"] = {"mlrollouts.dev/action": "promote"}
    deliver(edited)  # ours, and an annotation changed
    deleting = copy.deepcopy(edited)
    deleting["metadata"].update(resourceVersion="5", deletionTimestamp="2026-12-02T00:00:00Z")
    deliver(deleting)
    assert inner.seen == ["1", "2", "3", "4", "5"]
    assert own.skipped == 0
    deliver({**deleting, "metadata": {**deleting["metadata"], "resourceVersion": "6"}}, "DELETED")
    assert inner.seen[-1] == "6"


def test_a_changed_routing_claim_goes_through_kopf_for_the_index() -> None:
    """The index entry is compared (claims_of's own cases are in test_routing_record): here a stand-in claim."""
    claim = lambda raw: {} if raw["status"]["phase"] == "Succeeded" else {("vs",): ("1",)}  # noqa: E731
    own, inner, _, deliver = setup(written={"2", "3"}, claims=claim)
    deliver(body("1"), "ADDED")
    deliver(body("2", phase="Succeeded"))  # terminal: the claim on the routing object ends
    assert inner.seen == ["1", "2"]
    deliver(body("3", phase="Succeeded"))  # nothing changed for kopf since
    assert inner.seen == ["1", "2"] and own.skipped == 1


def test_a_pending_kopf_patch_goes_through_kopf() -> None:
    own, inner, memory, deliver = setup(written={"2"})
    deliver(body("1"), "ADDED")
    memory.remaining_patch = {"metadata": {"finalizers": []}}
    deliver(body("2"))
    assert inner.seen == ["1", "2"] and own.skipped == 0


def test_what_is_remembered_stays_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(own_writes, "SEEN_SIZE", 2)
    own, inner, _, deliver = setup(written={"2"})
    deliver(body("1"), "ADDED")
    for uid in ("u-2", "u-3"):  # two other objects processed in full since
        other = body("1")
        other["metadata"]["uid"] = uid
        deliver(other, "ADDED")
    deliver(body("2"))  # u-1 was forgotten: through kopf, not skipped
    assert own.skipped == 0 and inner.seen[-1] == "2"

"""own_writes: a watch event of our own status write that changed nothing kopf acts on skips kopf's processing
but still brings the analysis loop's live body up to date; every other event goes through kopf."""

from __future__ import annotations

import copy
from typing import Any

from own_writes_support import body, setup

from mlrollouts.controller import own_writes


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

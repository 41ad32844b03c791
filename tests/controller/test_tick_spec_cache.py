"""A spec is parsed once while it is unchanged: an edit is seen at once, a bad edit is still refused."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf
import pytest
from kopf._core.engines.indexing import OperatorIndexer
from stack import canary_manifest

from mlrollouts.api import ModelExperimentStatus, SpecError
from mlrollouts.controller.handlers import routing_claims
from mlrollouts.controller.reading import load, remember_status, routing_claim


def _body(generation: int, uid: str = "u-1", **spec: Any) -> dict[str, Any]:
    body = canary_manifest("churn", "http://prometheus:9090", **spec)
    body["metadata"].update(uid=uid, generation=generation, resourceVersion=str(generation))
    body["status"] = {"phase": "Progressing", "step": 1}
    return body


def test_an_edited_spec_is_parsed_again_and_the_status_is_always_read_fresh() -> None:
    first = load(_body(1))
    assert first.spec.analysis.interval == "1s"
    again = _body(1)
    again["status"] = {"phase": "Paused", "step": 2}
    cached = load(again)
    assert cached.spec is first.spec  # the same spec: parsed once
    assert (cached.status.phase, cached.status.step) == ("Paused", 2)
    edited = load(_body(2, analysis={**_body(1)["spec"]["analysis"], "interval": "7s"}))
    assert edited.spec.analysis.interval == "7s"


def test_the_status_this_process_wrote_is_reused_only_at_the_version_the_write_produced() -> None:
    """A tick decides on the status it wrote without validating it again; any other version (a hand edit of the
    status, another replica's write) is read from the object itself."""
    written = ModelExperimentStatus.model_validate({"phase": "Progressing", "step": 3})
    remember_status("u-6", "5", written)
    mine = _body(1, uid="u-6")
    mine["metadata"]["resourceVersion"] = "5"
    mine["status"] = written.to_wire()
    load(_body(1, uid="u-6"))  # the spec parsed (and cached) first, as after any earlier tick
    assert load(mine).status is written
    remember_status("u-6", "5", written)
    edited = _body(1, uid="u-6")
    edited["metadata"]["resourceVersion"] = "6"
    edited["status"] = {"phase": "Paused", "step": 3}
    assert (load(edited).status.phase, load(edited).status.step) == ("Paused", 3)
    other = _body(1, uid="u-7")  # another experiment at the same version number
    other["metadata"]["resourceVersion"] = "5"
    assert load(other).status.step == 1


def test_a_bad_edit_at_a_new_generation_is_refused_even_after_a_good_one_was_cached() -> None:
    load(_body(1, uid="u-2"))
    bad = copy.deepcopy(_body(2, uid="u-2"))
    bad["spec"]["analysis"]["primaryMetric"]["trials"] = 'sum(x{variant="{{variantt}}"})'
    with pytest.raises(SpecError, match=r"spec\.analysis\.primaryMetric\.trials"):
        load(bad)


def test_the_same_spec_under_another_interval_floor_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLROLLOUTS_MIN_INTERVAL", "1s")
    body = _body(1, uid="u-3")
    load(body)
    monkeypatch.delenv("MLROLLOUTS_MIN_INTERVAL")
    with pytest.raises(SpecError, match=r"spec\.analysis\.interval"):
        load(body)


def test_the_routing_claim_follows_an_edit_of_the_route_and_an_invalid_spec_claims_nothing() -> None:
    body = _body(1, uid="u-4")
    assert routing_claim(body) == ("VirtualService", "default", "churn")
    body["status"] = {"phase": "Progressing", "step": 2}  # our own status write: the same claim
    assert routing_claim(body) == ("VirtualService", "default", "churn")
    moved = _body(2, uid="u-4", traffic={"provider": "istio", "istio": {"virtualService": "other", "routes": ["p"]}})
    assert routing_claim(moved) == ("VirtualService", "default", "other")
    broken = _body(3, uid="u-4")
    broken["spec"]["strategy"] = "bogus"
    assert routing_claim(broken) is None


def test_the_claim_in_kopfs_real_index_is_withdrawn_when_the_experiment_turns_invalid_or_finishes() -> None:
    """kopf keeps an object's last index entry when the handler returns None: the claim must be withdrawn."""
    indexer = OperatorIndexer()
    body = _body(1, uid="u-5")
    body["status"] = {}
    key = ("default", "churn", "u-5")
    target = ("VirtualService", "default", "churn")

    def index(status: dict[str, Any]) -> None:
        body["status"] = status
        indexer.replace(key, asyncio.run(routing_claims(body=kopf.Body(copy.deepcopy(body)))))

    index({})
    assert target in indexer.index, "a new experiment claims its route"
    index({"phase": "Invalid", "reason": "InvalidSpec"})
    assert target not in indexer.index, "an Invalid experiment that moved no traffic blocks nobody"
    index({"phase": "Invalid", "reason": "InvalidSpec", "weights": {"churn-v2": 70, "churn-v3": 30}})
    assert target in indexer.index, "its split is applied: it keeps the route until fixed, finished or deleted"
    index({"phase": "Promoted", "weights": {"churn-v2": 0, "churn-v3": 100}})
    assert target not in indexer.index, "a finished experiment frees its route"

"""The routing the split was applied under (status.routing): what moves it, what claims a route, what deletion
restores. The end-to-end halves (real API server, real operator) are in test_restore_end_to_end.py."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from kopf._core.engines.indexing import OperatorIndexer
from stack import canary_manifest, virtual_service_manifest
from tick_support import fake_tick_ports

from mlrollouts.controller import routing_record
from mlrollouts.controller.handlers import _rival, routing_claims
from mlrollouts.controller.reading import load
from mlrollouts.controller.tick import reconcile
from mlrollouts.engine.types import Event
from mlrollouts.routing.fake import FakeKubeObjects

NOW = datetime(2026, 1, 1, tzinfo=UTC)
VS = "networking.istio.io/v1"
RUNNING = {"phase": "Progressing", "step": 0, "weights": {"churn-v2": 70, "churn-v3": 30}}


def _body(name: str = "churn", created: str = "2026-01-01T00:00:00Z", **spec: Any) -> dict[str, Any]:
    body = canary_manifest(name, "http://prometheus:9090", **spec)
    body["metadata"].update(uid=f"u-{name}", generation=1, resourceVersion="1", creationTimestamp=created)
    return body


def _recorded(body: dict[str, Any]) -> dict[str, Any]:
    """RUNNING, with the routing of the body's spec recorded as a tick records it."""
    routing = routing_record.with_record(None, load(body).spec)
    return {**RUNNING, "routing": routing.model_dump(by_alias=True, exclude_none=True, mode="json")}


def _moved(**edit: Any) -> tuple[str, str] | None:
    record = routing_record.recorded(_recorded(_body()))
    assert record is not None
    return routing_record.change(record, load(_body(**edit)).spec, "default")


def test_the_record_survives_a_round_trip_and_names_the_routing_object() -> None:
    record = routing_record.recorded(_recorded(_body()))
    assert record is not None and record.champion == "churn-v2"
    assert routing_record.describe("default", record.traffic) == "VirtualService default/churn (routes predict)"
    assert routing_record.recorded_target("default", _recorded(_body())) == ("VirtualService", "default", "churn")
    assert routing_record.recorded({**RUNNING}) is None, "no record: an older operator wrote this status"


@pytest.mark.parametrize(
    ("edit", "field", "text"),
    [
        (
            {"traffic": {"provider": "istio", "istio": {"virtualService": "other", "routes": ["predict"]}}},
            "spec.traffic",
            "now names VirtualService default/other",
        ),
        ({"traffic": {"provider": "istio", "istio": {"virtualService": "churn"}}}, "spec.traffic", "now names"),
        (
            {"challengers": [{"name": "churn-v3", "service": "churn-v3-new"}]},
            "spec.challengers",
            "service churn-v3-new instead of service churn-v3",
        ),
        ({"champion": {"name": "churn-v1", "service": "churn-v1"}}, "spec.champion", "from churn-v2 to churn-v1"),
    ],
)
def test_a_spec_that_would_move_the_split_is_a_change_naming_the_field_and_the_object(
    edit: dict[str, Any], field: str, text: str
) -> None:
    moved = _moved(**edit)
    assert moved is not None and moved[0] == field and text in moved[1]
    assert "VirtualService default/churn (routes predict)" in moved[1] and "delete the experiment" in moved[1]


def test_edits_that_leave_the_split_where_it_is_are_not_a_move() -> None:
    assert _moved() is None
    assert _moved(canary={"steps": [10, 100], "stepDuration": "5s", "minSamplesPerStep": 30}) is None


def test_a_running_experiment_pointed_at_another_virtual_service_is_refused_and_nothing_is_touched() -> None:
    objects = FakeKubeObjects()
    for name in ("churn", "other"):
        objects.add("virtualservices", virtual_service_manifest(name, "churn-v2", "churn-v3"))
    routes = {n: objects.stored(VS, "virtualservices", "default", n) for n in ("churn", "other")}
    body = _body()
    body["status"] = _recorded(body)
    body["spec"]["traffic"]["istio"]["virtualService"] = "other"
    body["metadata"]["generation"] = 2
    body = objects.add("modelexperiments", body)
    events: list[Event] = []

    async def post(event: Event) -> None:
        events.append(event)

    result = asyncio.run(reconcile(body, NOW, fake_tick_ports(objects, None, post)))
    assert result.status["phase"] == "Invalid" and result.status["reason"] == "RoutingChanged"
    assert result.status["weights"] == RUNNING["weights"], "the split it holds stays recorded"
    assert result.status["routing"]["traffic"]["istio"]["virtualService"] == "churn", "the record is kept"
    assert "churn-v3 30 %" in result.status["message"]
    assert [e.reason for e in events] == ["RoutingChanged"]
    after = {n: objects.stored(VS, "virtualservices", "default", n) for n in ("churn", "other")}
    assert after == routes, "no routing object was written"


def _index(indexer: OperatorIndexer, body: dict[str, Any]) -> None:
    key = ("default", body["metadata"]["name"], body["metadata"]["uid"])
    indexer.replace(key, asyncio.run(routing_claims(body=kopf.Body(copy.deepcopy(body)))))


def test_an_older_experiment_that_moved_no_traffic_cannot_take_a_route_another_ones_split_is_on() -> None:
    indexer = OperatorIndexer()
    older, newer = _body("older", "2026-01-01T00:00:00Z"), _body("newer", "2026-01-02T00:00:00Z")
    older["status"] = {"phase": "Pending"}
    newer["status"] = _recorded(newer)
    _index(indexer, older)
    _index(indexer, newer)
    assert _rival(load(older), indexer.index) == "newer"
    assert _rival(load(newer), indexer.index) is None


def test_an_experiment_whose_spec_broke_mid_run_keeps_the_recorded_route_claimed() -> None:
    indexer = OperatorIndexer()
    broken = _body("broken")
    broken["status"] = {**_recorded(broken), "phase": "Invalid"}
    broken["spec"]["strategy"] = "bogus"  # no route can be read from this spec
    _index(indexer, broken)
    assert ("VirtualService", "default", "churn") in indexer.index
    rival = _body("rival", "2026-02-01T00:00:00Z")
    rival["status"] = {}
    assert _rival(load(rival), indexer.index) == "broken"


def test_an_experiment_being_deleted_keeps_its_route_claimed_until_its_split_is_given_back() -> None:
    """The finalizer restores the champion after deletionTimestamp is set: a rival taking the route meanwhile
    would write its split while the restore writes the champion's."""
    indexer = OperatorIndexer()
    leaving = _body("leaving")
    leaving["status"] = _recorded(leaving)
    leaving["metadata"]["deletionTimestamp"] = "2026-03-01T00:00:00Z"
    _index(indexer, leaving)
    rival = _body("rival", "2026-02-01T00:00:00Z")
    rival["status"] = {}
    assert _rival(load(rival), indexer.index) == "leaving"
    leaving["status"] = {**leaving["status"], "weights": {}}  # given back: nothing left to guard
    _index(indexer, leaving)
    assert _rival(load(rival), indexer.index) is None

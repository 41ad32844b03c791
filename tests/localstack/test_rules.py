"""The server rules as pure functions: selectors, printer-column JSONPath, ages, write semantics, paths."""

from __future__ import annotations

import pytest

from mlrollouts.localstack.emulator import Target, parse_target
from mlrollouts.localstack.selectors import SelectorError, object_filter, parse_label_selector
from mlrollouts.localstack.semantics import ApiError, ResourceSpec, new_object, patched, updated_object
from mlrollouts.localstack.tables import evaluate_jsonpath, human_duration, render_table
from mlrollouts.localstack.watch import ChangeEvent, ChangeLog, TooOldResourceVersion, Watcher

SPEC = ResourceSpec("mlrollouts.dev", "v1alpha1", "modelexperiments", "ModelExperiment", True, subresources={"status"})


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (x, y),c", {"a": "y", "c": ""}, True),
        ("a notin (x,y)", {"a": "x"}, False),
        ("!a", {"a": "1"}, False),
        ("", {"anything": "1"}, True),
    ],
)
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector)(labels) is expected


def test_field_selector_and_errors() -> None:
    obj = {"metadata": {"name": "a", "namespace": "ns"}}
    assert object_filter(None, "metadata.name=a,metadata.namespace=ns")(obj)
    assert not object_filter(None, "metadata.namespace!=ns")(obj)
    with pytest.raises(SelectorError, match=r"spec\.x"):
        object_filter(None, "spec.x=1")
    with pytest.raises(SelectorError, match="unable to parse"):
        parse_label_selector("a in x")


def test_printer_column_jsonpath() -> None:
    obj = {"status": {"conditions": [{"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    assert evaluate_jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert evaluate_jsonpath(obj, ".status.conditions[0].type") == "Progressing"
    assert evaluate_jsonpath(obj, ".status.conditions[5].type") is None
    assert evaluate_jsonpath(obj, ".spec.strategy") is None


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (4 * 3600 + 60, "4h1m"), (30 * 3600, "30h"),
     (3 * 86400 + 3600, "3d1h"), (30 * 86400, "30d"), (800 * 86400, "2y70d")],
)  # fmt: skip
def test_ages_match_kubectl(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_table_has_name_columns_and_age() -> None:
    columns = [{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}]
    obj = {"metadata": {"name": "a", "creationTimestamp": "2000-01-01T00:00:00Z"}, "status": {"phase": "Running"}}
    table = render_table([obj], columns, "7", include_object="Object")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Phase", "Age"]
    assert table["rows"][0]["cells"][:2] == ["a", "Running"]
    assert table["rows"][0]["cells"][2].endswith("y")
    assert table["rows"][0]["object"] == obj


def test_create_fills_server_metadata_and_drops_status() -> None:
    obj = new_object({"metadata": {"generateName": "x-"}, "spec": {}, "status": {"phase": "Fake"}}, SPEC, "ns", 9)
    metadata = obj["metadata"]
    assert metadata["name"].startswith("x-") and len(metadata["name"]) == 7
    assert (metadata["resourceVersion"], metadata["generation"], metadata["namespace"]) == ("9", 1, "ns")
    assert "status" not in obj
    with pytest.raises(ApiError) as missing_name:
        new_object({"metadata": {}}, SPEC, "ns", 1)
    assert missing_name.value.code == 422


def test_update_rules() -> None:
    old = new_object({"metadata": {"name": "a"}, "spec": {"w": 1}}, SPEC, "ns", 1)
    old["status"] = {"phase": "Running"}
    assert (
        updated_object(old, patched(old, {"metadata": {"labels": {"a": "b"}}}, "merge"), SPEC, None, 2)["metadata"][
            "generation"
        ]
        == 1
    )  # metadata-only change keeps the generation
    spec_change = updated_object(
        old, patched(old, {"spec": {"w": 2}, "status": {"phase": "X"}}, "merge"), SPEC, None, 3
    )
    assert spec_change["metadata"]["generation"] == 2 and spec_change["status"] == {"phase": "Running"}
    status_change = updated_object(old, patched(old, {"spec": {"w": 3}, "status": {"phase": "Done"}}, "merge"), SPEC,
                                   "status", 4)  # fmt: skip
    assert status_change["spec"] == {"w": 1} and status_change["status"] == {"phase": "Done"}
    assert status_change["metadata"]["resourceVersion"] == "4"
    assert updated_object(old, dict(old), SPEC, None, 5) is None  # no change, no new version
    with pytest.raises(ApiError) as conflict:
        updated_object(old, {**old, "metadata": {**old["metadata"], "resourceVersion": "0"}}, SPEC, None, 6)
    assert conflict.value.code == 409
    with pytest.raises(ApiError) as failed_test:
        patched(old, [{"op": "test", "path": "/spec/w", "value": 7}], "application/json-patch+json")
    assert failed_test.value.code == 422


def test_paths() -> None:
    assert parse_target("/api/v1") is None and parse_target("/apis/apps/v1") is None
    assert parse_target("/api/v1/namespaces") == Target("", "v1", "namespaces", None, None, None)
    assert parse_target("/api/v1/namespaces/a") == Target("", "v1", "namespaces", None, "a", None)
    assert parse_target("/api/v1/namespaces/a/status") == Target("", "v1", "namespaces", None, "a", "status")
    assert parse_target("/api/v1/namespaces/a/events") == Target("", "v1", "events", "a", None, None)
    assert parse_target("/apis/apps/v1/namespaces/a/deployments/d/scale") == Target(
        "apps", "v1", "deployments", "a", "d", "scale"
    )


def test_watch_log_replays_after_a_version_and_expires_old_ones() -> None:
    log = ChangeLog(capacity=3)
    resource = ("g", "v", "p")
    for revision in range(1, 6):
        log.publish(ChangeEvent(revision, resource, "MODIFIED", {"metadata": {"name": f"o{revision}"}}))
    watcher = Watcher(resource, lambda obj: True)
    assert [event.revision for event in log.subscribe(watcher, 3)] == [4, 5]
    with pytest.raises(TooOldResourceVersion):
        log.subscribe(Watcher(resource, lambda obj: True), 1)

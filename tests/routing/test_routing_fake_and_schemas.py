"""The test doubles are honest: the fake has API-server write semantics, the schema check rejects bad objects."""

from __future__ import annotations

import jsonschema
import pytest
from routing_objects import NAMESPACE, ValidatingFake, destination, http_route, virtual_service

from mlrollouts.routing.fake import FakeKubeObjects
from mlrollouts.routing.kube import ObjectConflict, ObjectNotFound
from schema_validation import validate_custom_object

VS = "networking.istio.io/v1"


async def test_merge_patch_deletes_on_null_and_replaces_lists() -> None:
    fake = FakeKubeObjects()
    fake.add("virtualservices", virtual_service([{"name": "a", "route": [destination("x")]}]))
    patched = await fake.patch(
        VS, "virtualservices", NAMESPACE, "churn", {"spec": {"gateways": None, "hosts": ["other"]}}
    )
    assert "gateways" not in patched["spec"] and patched["spec"]["hosts"] == ["other"]
    assert patched["spec"]["http"] == [{"name": "a", "route": [destination("x")]}]


async def test_json_patch_test_op_guards_against_concurrent_writers() -> None:
    fake = FakeKubeObjects()
    created = fake.add("virtualservices", virtual_service([]))
    version = created["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/spec/http/-", "value": {"name": "b"}},
    ]
    await fake.patch(VS, "virtualservices", NAMESPACE, "churn", ops, patch_type="json")
    assert fake.stored(VS, "virtualservices", NAMESPACE, "churn")["spec"]["http"] == [{"name": "b"}]
    with pytest.raises(ObjectConflict):
        await fake.patch(VS, "virtualservices", NAMESPACE, "churn", ops, patch_type="json")


async def test_replace_with_a_stale_version_conflicts_and_missing_objects_are_not_found() -> None:
    fake = FakeKubeObjects()
    created = fake.add("virtualservices", virtual_service([]))
    await fake.patch(VS, "virtualservices", NAMESPACE, "churn", {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(ObjectConflict):
        await fake.replace(VS, "virtualservices", NAMESPACE, "churn", created)
    with pytest.raises(ObjectNotFound, match="VirtualService ml/nope not found"):
        await fake.get(VS, "virtualservices", NAMESPACE, "nope")


def test_schema_check_rejects_what_the_api_server_would() -> None:
    bad_weight = virtual_service([{"name": "a", "route": [{"destination": {"host": "x"}, "weight": "ten"}]}])
    with pytest.raises(jsonschema.ValidationError, match="'ten' is not of type 'integer'"):
        validate_custom_object(bad_weight)
    mirror = {"backendRef": {"name": "churn-v3", "port": 8080}, "percent": 150}
    bad_percent = http_route([{"filters": [{"type": "RequestMirror", "requestMirror": mirror}]}])
    with pytest.raises(jsonschema.ValidationError, match="150 is greater than the maximum of 100"):
        validate_custom_object(bad_percent)
    with pytest.raises(LookupError, match=r"no schema for apiVersion example\.com/v1"):
        validate_custom_object({"apiVersion": "example.com/v1", "kind": "Widget"})


async def test_the_validating_fake_refuses_an_invalid_write() -> None:
    fake = ValidatingFake()
    fake.add("virtualservices", virtual_service([]))
    with pytest.raises(jsonschema.ValidationError):
        await fake.patch(VS, "virtualservices", NAMESPACE, "churn", {"spec": {"http": [{"timeout": 5}]}})

"""The emulator through the kubernetes Python client: the API-server rules the operator relies on."""

from __future__ import annotations

import json

import httpx
import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from mlrollouts.localstack.server import LocalApiServer

pytestmark = pytest.mark.integration
GROUP, VERSION, PLURAL = "mlrollouts.dev", "v1alpha1", "modelexperiments"


def experiment(name: str, **labels: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelExperiment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"strategy": "canary"},
    }


@pytest.fixture
def custom(
    apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient
) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(k8s_api_client)


def test_stale_resource_version_is_a_conflict(custom: kubernetes.client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, experiment("a"))
    stale = created["metadata"]["resourceVersion"]
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a", {"spec": {"strategy": "bandit"}})
    with pytest.raises(ApiException) as conflict:
        body = {"metadata": {"resourceVersion": stale}, "spec": {"strategy": "shadow"}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a", body)
    assert conflict.value.status == 409
    replaced = {**created, "spec": {"strategy": "shadow"}}  # PUT with the stale version: also refused
    with pytest.raises(ApiException) as conflict_on_put:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a", replaced)
    assert conflict_on_put.value.status == 409
    current = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a")
    assert current["spec"]["strategy"] == "bandit"
    replaced["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    after_put = custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a", replaced)
    assert after_put["spec"] == {"strategy": "shadow"}
    assert after_put["metadata"]["generation"] == 3


def test_failed_json_patch_test_is_422(apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(k8s_api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, experiment("a"))
    operations = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999999"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    url = f"{apiserver.url}/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/a"
    headers = {"Content-Type": "application/json-patch+json"}
    response = httpx.patch(url, content=json.dumps(operations), headers=headers)
    assert response.status_code == 422
    assert response.json()["kind"] == "Status"
    assert "finalizers" not in custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a")["metadata"]


def test_label_and_field_selectors_filter_lists(custom: kubernetes.client.CustomObjectsApi) -> None:
    for name, labels in [("a", {"team": "search", "tier": "gold"}), ("b", {"team": "ads"}), ("c", {"team": "search"})]:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, experiment(name, **labels))

    def names(**query: str) -> list[str]:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, **query)
        return [item["metadata"]["name"] for item in listed["items"]]

    assert names(label_selector="team=search") == ["a", "c"]
    assert names(label_selector="team!=search") == ["b"]
    assert names(label_selector="team in (ads, search),tier") == ["a"]
    assert names(label_selector="!tier") == ["b", "c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    with pytest.raises(ApiException) as bad:
        names(field_selector="spec.strategy=canary")
    assert bad.value.status == 400


def test_events_with_generate_name_get_distinct_names(
    apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api_client)
    event = {
        "metadata": {"generateName": "ranker-"},
        "involvedObject": {"kind": "ModelExperiment", "name": "ranker", "namespace": "default"},
        "reason": "Promoted",
        "message": "challenger promoted",
        "type": "Normal",
    }
    first = core.create_namespaced_event("default", event)
    second = core.create_namespaced_event("default", event)
    assert first.metadata.name != second.metadata.name
    assert first.metadata.name.startswith("ranker-") and len(first.metadata.name) == len("ranker-") + 5
    assert [e.reason for e in core.list_namespaced_event("default").items] == ["Promoted", "Promoted"]
    events_v1 = kubernetes.client.EventsV1Api(k8s_api_client)
    new_style = {
        "metadata": {"generateName": "ranker-"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "mlrollouts.dev/operator",
        "reportingInstance": "test",
        "action": "Promote",
        "reason": "Promoted",
        "regarding": {"kind": "ModelExperiment", "name": "ranker", "namespace": "default"},
        "type": "Normal",
    }
    created = events_v1.create_namespaced_event("default", new_style)
    assert created.metadata.name.startswith("ranker-") and created.metadata.resource_version


def test_namespaces_are_served_and_required(
    apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api_client)
    assert core.read_namespace("default").status.phase == "Active"
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_config_map("team-a", {"metadata": {"name": "c"}})
    assert missing.value.status == 404
    core.create_namespace({"metadata": {"name": "team-a"}})
    core.create_namespaced_config_map("team-a", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    assert [ns.metadata.name for ns in core.list_namespace().items] == ["default", "team-a"]
    core.delete_namespace("team-a")
    assert core.list_config_map_for_all_namespaces().items == []


def test_deployment_scale_subresource(apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(k8s_api_client)
    deployment = {
        "metadata": {"name": "ranker-v2"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ranker"}}, "template": {}},
    }
    apps.create_namespaced_deployment("default", deployment)
    apps.patch_namespaced_deployment_scale("ranker-v2", "default", {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment_scale("ranker-v2", "default").spec.replicas == 4
    assert apps.read_namespaced_deployment("ranker-v2", "default").spec.replicas == 4


def test_watch_resumes_after_the_listed_resource_version(custom: kubernetes.client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, experiment("old"))
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, experiment("new"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "old")
    stream = kubernetes.watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
        resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=1,
    )  # fmt: skip
    seen = [(event["type"], event["object"]["metadata"]["name"]) for event in stream]
    assert seen == [("ADDED", "new"), ("DELETED", "old")]


def test_secret_string_data_is_stored_as_base64_data(k8s_api_client: kubernetes.client.ApiClient) -> None:
    """As the real server: stringData is write-only, merged into data (base64) and never stored or returned."""
    core = kubernetes.client.CoreV1Api(k8s_api_client)
    body = {"metadata": {"name": "prom-token"}, "data": {"user": "YWRh"}, "stringData": {"token": "t0ken"}}
    created = core.create_namespaced_secret("default", body)
    assert created.data == {"user": "YWRh", "token": "dDBrZW4="} and created.string_data is None
    core.patch_namespaced_secret("prom-token", "default", {"stringData": {"user": "bob"}})
    stored = core.read_namespaced_secret("prom-token", "default")
    assert stored.data == {"user": "Ym9i", "token": "dDBrZW4="} and stored.string_data is None

"""On the real kube-apiserver, a guarded JSON patch tells a stale read (conflict: re-read) from a value the
schema refuses (an error that re-reading cannot fix). Both are HTTP 422 there."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator

import pytest

from mlrollouts.localstack import binaries
from mlrollouts.localstack.realcluster import RealApiServer
from mlrollouts.routing.kube import ApiRequestFailed, KubeObjects, ObjectConflict

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not binaries.available(), reason=binaries.unavailable_reason()),
]
API = "mlrollouts.dev/v1alpha1"
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "demo-better.yaml"


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeObjects]:
    import yaml

    folder = tmp_path_factory.mktemp("patch-errors")
    with RealApiServer(kubeconfig_path=folder / "kubeconfig") as server:
        client = KubeObjects.from_kubeconfig(str(server.kubeconfig))
        manifest = yaml.safe_load(EXAMPLE.read_text())
        manifest["metadata"] = {"name": "e", "namespace": "default"}
        asyncio.run(client.create(API, "modelexperiments", "default", manifest))
        yield client
        client.close()


def _status_patch(version: str, status: dict) -> list[dict]:
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/status", "value": status},
    ]


def test_a_stale_resource_version_is_a_conflict(objects: KubeObjects) -> None:
    with pytest.raises(ObjectConflict):
        asyncio.run(objects.patch(API, "modelexperiments", "default", "e", _status_patch("1", {}), "json", "status"))


def test_a_status_the_schema_refuses_is_an_error_naming_the_field_not_a_conflict(objects: KubeObjects) -> None:
    version = asyncio.run(objects.get(API, "modelexperiments", "default", "e"))["metadata"]["resourceVersion"]
    patch = _status_patch(version, {"phase": "NotAPhase"})
    with pytest.raises(ApiRequestFailed) as refused:
        asyncio.run(objects.patch(API, "modelexperiments", "default", "e", patch, "json", "status"))
    assert not isinstance(refused.value, ObjectConflict)
    assert refused.value.http_status == 422 and "status.phase" in str(refused.value)


def test_a_status_write_reads_back_only_the_metadata_it_needs(objects: KubeObjects) -> None:
    """The tick needs only the new resourceVersion; the API server sends the metadata alone, not the 8 KB object,
    and the guard still refuses a write over the version the answer named once the object moved on."""
    version = asyncio.run(objects.get(API, "modelexperiments", "default", "e"))["metadata"]["resourceVersion"]
    patch = _status_patch(version, {"phase": "Progressing", "step": 1})
    written = asyncio.run(objects.patch(API, "modelexperiments", "default", "e", patch, "json", "status", True))
    assert "spec" not in written and "status" not in written
    stored = asyncio.run(objects.get(API, "modelexperiments", "default", "e"))
    assert written["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"] != version
    assert stored["status"]["step"] == 1
    with pytest.raises(ObjectConflict):
        asyncio.run(objects.patch(API, "modelexperiments", "default", "e", patch, "json", "status", True))

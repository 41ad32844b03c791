"""Upstream routing CRDs (Istio, Gateway API) and the project's own CRD installed into the emulator."""

from __future__ import annotations

import pathlib

import kubernetes
import pytest
import yaml

from mlrollouts.localstack.kubectl import NO_VALIDATION, Kubectl
from mlrollouts.localstack.server import PROJECT_CRD, LocalApiServer

pytestmark = pytest.mark.integration
SCHEMAS = pathlib.Path(__file__).resolve().parents[1] / "data" / "schemas"  # copies; sources in SOURCES.md


def test_istio_and_gateway_api_objects_can_be_written_and_patched(
    local_apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient
) -> None:
    names = local_apiserver.install_crd_files(
        [SCHEMAS / "istio-networking.crd.yaml", SCHEMAS / "gateway-api-httproutes.crd.yaml"]
    )
    assert {"virtualservices.networking.istio.io", "httproutes.gateway.networking.k8s.io"} <= set(names)
    custom = kubernetes.client.CustomObjectsApi(k8s_api_client)
    route = {"destination": {"host": "ranker", "subset": "v1"}, "weight": 100}
    service = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "ranker"},
        "spec": {"hosts": ["ranker"], "http": [{"name": "primary", "route": [route]}]},
    }
    custom.create_namespaced_custom_object("networking.istio.io", "v1beta1", "default", "virtualservices", service)
    split = [{**route, "weight": 90}, {"destination": {"host": "ranker", "subset": "v2"}, "weight": 10}]
    patched = custom.patch_namespaced_custom_object(
        "networking.istio.io", "v1beta1", "default", "virtualservices", "ranker",
        {"spec": {"http": [{"name": "primary", "route": split}]}},
    )  # fmt: skip
    assert [r["weight"] for r in patched["spec"]["http"][0]["route"]] == [90, 10]
    assert patched["metadata"]["generation"] == 2
    http_route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "ranker"},
        "spec": {"rules": [{"backendRefs": [{"name": "ranker-v1", "port": 80, "weight": 100}]}]},
    }
    created = custom.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", "default", "httproutes", http_route
    )
    assert created["kind"] == "HTTPRoute" and created["metadata"]["generation"] == 1


def test_project_crd_printer_columns(local_apiserver: LocalApiServer, kubectl: Kubectl) -> None:
    """`local_apiserver` installs crds/modelexperiments.mlrollouts.dev.yaml; kubectl shows its columns."""
    crd = yaml.safe_load(PROJECT_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("served"))
    manifest = {
        "apiVersion": f"{crd['spec']['group']}/{version['name']}",
        "kind": crd["spec"]["names"]["kind"],
        "metadata": {"name": "columns"},
        "spec": {},
    }
    assert kubectl.run("apply", NO_VALIDATION, "-f", "-", input=yaml.safe_dump(manifest)).returncode == 0
    header = kubectl.run("get", "mexp").stdout.splitlines()[0]
    shown = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert header.split() == ["NAME", *shown]

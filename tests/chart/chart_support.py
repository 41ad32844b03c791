"""Rendering and validation helpers shared by the chart tests."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from helm_python.chart import Chart

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "mlrollouts"
SCHEMAS_DIR = REPO / "tests" / "data" / "schemas"
RELEASE = "rel"
RELEASE_NAMESPACE = "mlrollouts-system"

GATEWAY_ON = {
    "enabled": True,
    "experiment": "churn-v3",
    "experimentNamespace": "ml",
    "champion": "churn-v2",
    "upstreams": [
        {"name": "churn-v2", "url": "http://churn-v2.ml:8080"},
        {"name": "churn-v3", "url": "http://churn-v3.ml:8080"},
    ],
}
EVERYTHING_ON = {
    "gateway": GATEWAY_ON,
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "grafana": {"dashboard": {"enabled": True}},
}
PROMETHEUS_CREDENTIALS = {
    "defaultAddress": "http://prometheus-operated.monitoring:9090",
    "allowedAddresses": ["https://thanos-query.monitoring:9090", "mimir.obs:8080"],
    "secretNames": ["prom-token", "prom-ca"],
}
HARDENED = {
    "gateway": GATEWAY_ON,
    "watchNamespaces": ["a", "b"],
    "prometheus": PROMETHEUS_CREDENTIALS,
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    },
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["a", "b"]},
    "everything": EVERYTHING_ON,
    "single-replica": {"replicaCount": 1, "peering": {"enabled": False}},
    "hardened": HARDENED,
}


@functools.cache
def chart() -> Chart:
    return Chart.load(CHART_DIR)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-empty object the chart renders for these values (NOTES.txt excluded)."""
    files = chart().render(values, name=RELEASE, namespace=RELEASE_NAMESPACE)
    objects: list[dict[str, Any]] = []
    for path, text in files.items():
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, got {len(matches)}"
    return matches[0]


def crd_schemas(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → openAPIV3Schema of every served version in a CRD file."""
    schemas = {}
    for crd in yaml.safe_load_all(path.read_text()):
        if not crd:
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            api_version = f"{spec['group']}/{version['name']}"
            schemas[(api_version, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


@functools.cache
def custom_resource_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = crd_schemas(CHART_DIR / "crds" / "kopf-peering.yaml")
    schemas.update(crd_schemas(CHART_DIR / "crds" / "clustermetrictemplates.mlrollouts.dev.yaml"))
    for name in ("prometheus-operator-servicemonitors", "prometheus-operator-prometheusrules"):
        schemas.update(crd_schemas(SCHEMAS_DIR / f"{name}.crd.yaml"))
    return schemas


def validate_custom_resource(obj: dict[str, Any]) -> None:
    """Validate against the CRD schema; x-kubernetes-* keywords are unknown to jsonschema and ignored.

    The schema itself is not meta-checked: the upstream PrometheusRule schema has a Go-only regex
    (`^(?i)(abort|warn)?$`, inline flag after `^`) that Python rejects, and the file stays unchanged.
    """
    schema = custom_resource_schemas()[(obj["apiVersion"], obj["kind"])]
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(obj)
    ]
    assert errors == [], f"{obj['kind']} {obj['metadata']['name']} is invalid: {errors}"

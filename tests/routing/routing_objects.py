"""Routing test helpers: a FakeKubeObjects that validates every object against its upstream schema on write,
and realistic VirtualService / HTTPRoute / Deployment builders."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

from mlrollouts.api.spec import Variant
from mlrollouts.routing.fake import FakeKubeObjects
from schema_validation import validate_custom_object

NAMESPACE = "ml"
CHAMPION = Variant(name="churn-v2", service="churn-v2")
CHALLENGER = Variant(name="churn-v3", service="churn-v3")
THIRD = Variant(name="churn-v4", service="churn-v4")


@dataclass(frozen=True)
class RoutingCluster:
    """What the `routing_cluster` fixture yields: which backend, and an admin kubeconfig for it."""

    backend: str  # "real" or "emulated"
    kubeconfig: pathlib.Path

    @property
    def real(self) -> bool:
        return self.backend == "real"


class ValidatingFake(FakeKubeObjects):
    """Every seeded and every written object must validate against the upstream CRD or built-in schema."""

    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        validate_custom_object(obj)
        return super().add(plural, obj)

    def _write(self, key: tuple[str, str, str, str], proposed: dict[str, Any]) -> dict[str, Any]:
        validate_custom_object(proposed)
        return super()._write(key, proposed)


def destination(host: str, weight: int | None = None, subset: str | None = None, port: int = 8080) -> dict:
    entry: dict[str, Any] = {"destination": {"host": host, "port": {"number": port}}}
    if subset:
        entry["destination"]["subset"] = subset
    if weight is not None:
        entry["weight"] = weight
    return entry


def virtual_service(http: list[dict], name: str = "churn", api_version: str = "networking.istio.io/v1") -> dict:
    return {
        "apiVersion": api_version,
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"hosts": ["churn.ml.svc.cluster.local"], "gateways": ["mesh"], "http": http},
    }


def managed_and_unmanaged_routes() -> list[dict]:
    """Two routes the experiment manages and one admin route with matches and retries it must not touch."""
    return [
        {
            "name": "admin",
            "match": [{"uri": {"prefix": "/admin"}, "headers": {"x-role": {"exact": "ops"}}}],
            "retries": {"attempts": 3, "perTryTimeout": "2s"},
            "route": [destination("churn-v2")],
        },
        {
            "name": "predict",
            "match": [{"uri": {"prefix": "/predict"}}],
            "timeout": "5s",
            "retries": {"attempts": 2, "perTryTimeout": "1s", "retryOn": "5xx"},
            "headers": {"request": {"set": {"x-experiment": "churn"}}},
            "route": [destination("churn-v2", 100)],
        },
        {"name": "explain", "match": [{"uri": {"prefix": "/explain"}}], "route": [destination("churn-v2", 100)]},
    ]


def backend(name: str, weight: int | None = None, port: int = 8080) -> dict:
    ref: dict[str, Any] = {"name": name, "port": port}
    if weight is not None:
        ref["weight"] = weight
    return ref


def http_route(rules: list[dict], name: str = "churn") -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"parentRefs": [{"name": "public", "namespace": "gateways"}], "rules": rules},
    }


def deployment(name: str, replicas: int) -> dict:
    labels = {"app": "churn", "version": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "model", "image": f"registry.local/{name}:1"}]},
            },
        },
    }

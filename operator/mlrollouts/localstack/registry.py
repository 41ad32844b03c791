"""Which resources the emulator serves: kmock's bundled built-ins plus CRDs installed at runtime.

kmock keeps discovery data (`ResourcesArray`); this adds what a real server also knows per resource:
printer columns for Tables, status/scale subresources, and registration when a CRD object is created.
"""

from __future__ import annotations

import gzip
import importlib.resources
from collections.abc import Mapping
from typing import Any

import kmock

from mlrollouts.localstack.semantics import ApiError, ResourceSpec

ALL_VERBS = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
CRD_RESOURCE = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")

# Built-ins the operator touches; declared explicitly so they work whatever the bundled discovery holds.
BUILTINS: tuple[ResourceSpec, ...] = (
    ResourceSpec("", "v1", "namespaces", "Namespace", False, "namespace", {"status", "finalize"}),
    ResourceSpec("", "v1", "events", "Event", True, "event"),
    ResourceSpec("events.k8s.io", "v1", "events", "Event", True, "event"),
    ResourceSpec("coordination.k8s.io", "v1", "leases", "Lease", True, "lease"),
    ResourceSpec("apps", "v1", "deployments", "Deployment", True, "deployment", {"status", "scale"}),
    ResourceSpec("", "v1", "services", "Service", True, "service", {"status"}),
    ResourceSpec("", "v1", "secrets", "Secret", True, "secret"),
    ResourceSpec("", "v1", "configmaps", "ConfigMap", True, "configmap"),
    ResourceSpec("", "v1", "pods", "Pod", True, "pod", {"status"}),
    ResourceSpec(*CRD_RESOURCE, "CustomResourceDefinition", False, "customresourcedefinition", {"status"}),
)
SHORT_NAMES = {
    "namespaces": {"ns"},
    "events": {"ev"},
    "deployments": {"deploy"},
    "services": {"svc"},
    "configmaps": {"cm"},
    "pods": {"po"},
    "customresourcedefinitions": {"crd", "crds"},
}


def specs_from_crd(crd: Mapping[str, Any]) -> list[ResourceSpec]:
    """One spec per served version of a CustomResourceDefinition."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
    if not (group and plural and kind):
        raise ApiError(
            422, "Invalid", "CustomResourceDefinition: spec.group, spec.names.plural, spec.names.kind are required"
        )
    result = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        result.append(
            ResourceSpec(
                group=group,
                version=version["name"],
                plural=plural,
                kind=kind,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular") or kind.lower(),
                subresources=set((version.get("subresources") or {}).keys()),
                printer_columns=list(version.get("additionalPrinterColumns") or []),
            )
        )
    return result


class Registry:
    """Resource specs by (group, version, plural), mirrored into kmock's discovery array."""

    def __init__(self, discovery: kmock.ResourcesArray) -> None:
        self._discovery = discovery
        self._specs: dict[tuple[str, str, str], ResourceSpec] = {}
        self._crd_extras: dict[tuple[str, str, str], tuple[set[str], set[str]]] = {}
        # kmock's bundled k3s discovery, read without its deprecated importlib call.
        bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz").read_bytes()
        discovery.load_data(gzip.decompress(bundled))
        for spec in BUILTINS:
            self.register(spec, SHORT_NAMES.get(spec.plural, set()))

    def register(
        self, spec: ResourceSpec, short_names: set[str] | None = None, categories: set[str] | None = None
    ) -> None:
        key = (spec.group, spec.version, spec.plural)
        self._specs[key] = spec
        self._discovery[kmock.resource(*key)] = kmock.ResourceInfo(
            kind=spec.kind,
            singular=spec.singular or spec.kind.lower(),
            namespaced=spec.namespaced,
            verbs=set(ALL_VERBS),
            shortnames=set(short_names or ()),
            categories=set(categories or ()),
            subresources=set(spec.subresources),
        )

    def register_crd(self, crd: Mapping[str, Any]) -> list[ResourceSpec]:
        names = (crd.get("spec") or {}).get("names") or {}
        specs = specs_from_crd(crd)
        for spec in specs:
            self.register(spec, set(names.get("shortNames") or []), set(names.get("categories") or []))
        return specs

    def unregister_crd(self, crd: Mapping[str, Any]) -> None:
        for spec in specs_from_crd(crd):
            key = (spec.group, spec.version, spec.plural)
            self._specs.pop(key, None)
            resource = kmock.resource(*key)
            if resource in self._discovery:
                del self._discovery[resource]

    def lookup(self, group: str, version: str, plural: str) -> ResourceSpec:
        key = (group, version, plural)
        if key not in self._specs:
            resource = kmock.resource(*key)
            if resource not in self._discovery:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            info = self._discovery[resource]
            self._specs[key] = ResourceSpec(
                group,
                version,
                plural,
                info.kind or plural.capitalize(),
                bool(info.namespaced),
                info.singular or "",
                set(info.subresources),
            )
        return self._specs[key]

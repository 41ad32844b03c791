"""Object storage with a real server's write rules, on top of kmock's versioned `ObjectsArray`.

Every write gets the next global resourceVersion and is published to the change log for watchers.
Objects stay inspectable from tests as `emulator.objects[resource, namespace, name]` with recent history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kmock

from mlrollouts.localstack.registry import CRD_RESOURCE, Registry
from mlrollouts.localstack.semantics import ApiError, ResourceSpec, new_object, now_timestamp, updated_object
from mlrollouts.localstack.watch import ChangeEvent, ChangeLog

logger = logging.getLogger(__name__)
HISTORY_KEPT = 16  # versions per object retained for assertions; bounds memory in long benchmarks


class Store:
    def __init__(self, objects: kmock.ObjectsArray, registry: Registry, changes: ChangeLog) -> None:
        self.objects, self.registry, self.changes = objects, registry, changes
        self.revision = 0

    @staticmethod
    def key(spec: ResourceSpec, namespace: str | None, name: str) -> tuple[Any, str | None, str]:
        return kmock.resource(spec.group, spec.version, spec.plural), namespace if spec.namespaced else None, name

    def get(self, spec: ResourceSpec, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = self.key(spec, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    def require(self, spec: ResourceSpec, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.get(spec, namespace, name)
        if obj is None:
            raise spec.not_found(name)
        return obj

    def list(
        self, spec: ResourceSpec, namespace: str | None, accepts: Callable[[Mapping[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        resource = kmock.resource(spec.group, spec.version, spec.plural)
        found = []
        for (obj_resource, obj_namespace, _), obj in self.objects.items():
            if obj_resource != resource or obj.deleted:
                continue
            if spec.namespaced and namespace is not None and obj_namespace != namespace:
                continue
            raw = obj.raw
            if accepts(raw):
                found.append(raw)
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def _next_revision(self) -> int:
        self.revision += 1
        return self.revision

    def _publish(self, spec: ResourceSpec, kind: str, obj: Mapping[str, Any]) -> None:
        self.changes.publish(ChangeEvent(self.revision, (spec.group, spec.version, spec.plural), kind, obj))

    def _require_namespace(self, spec: ResourceSpec, namespace: str | None) -> None:
        if spec.namespaced and namespace is not None:
            namespaces = self.registry.lookup("", "v1", "namespaces")
            if self.get(namespaces, None, namespace) is None:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')

    def create(
        self, spec: ResourceSpec, namespace: str | None, body: Mapping[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        namespace = namespace or (body.get("metadata") or {}).get("namespace") if spec.namespaced else None
        self._require_namespace(spec, namespace or "default")
        obj = new_object(body, spec, namespace, self.revision + 1)
        key = self.key(spec, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if key in self.objects and not self.objects[key].deleted:
            raise ApiError(409, "AlreadyExists", f'{spec.qualified} "{obj["metadata"]["name"]}" already exists')
        if dry_run:
            return obj
        if spec.plural == "customresourcedefinitions":
            self.registry.register_crd(body)  # validates names before anything is stored
        self._next_revision()
        if key in self.objects:
            self.objects[key].create(obj)
        else:
            self.objects[key] = obj
        self._publish(spec, "ADDED", obj)
        logger.debug("created resource=%s namespace=%s name=%s", spec.qualified, key[1], key[2])
        return obj

    def update(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        proposed: Mapping[str, Any],
        subresource: str | None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Store the proposed full object; a deleting object whose finalizers are gone is removed."""
        old = self.require(spec, namespace, name)
        new = updated_object(old, proposed, spec, subresource, self.revision + 1)
        if new is None or dry_run:
            return new or old
        self._next_revision()
        stored = self.objects[self.key(spec, namespace, name)]
        stored.create(new)
        del stored.history[: -HISTORY_KEPT or None]
        if spec.plural == "customresourcedefinitions" and (spec.group, spec.version, spec.plural) == CRD_RESOURCE:
            self.registry.register_crd(new)
        self._publish(spec, "MODIFIED", new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(spec, namespace, name)
        return new

    def delete(self, spec: ResourceSpec, namespace: str | None, name: str, dry_run: bool = False) -> dict[str, Any]:
        """Mark for deletion while finalizers remain (as the API server does), otherwise remove."""
        obj = self.require(spec, namespace, name)
        metadata = obj["metadata"]
        if metadata.get("deletionTimestamp") or dry_run:
            return obj
        if metadata.get("finalizers"):
            marked = {**obj, "metadata": {**metadata, "deletionTimestamp": now_timestamp()}}
            marked["metadata"]["resourceVersion"] = str(self._next_revision())
            self.objects[self.key(spec, namespace, name)].create(marked)
            self._publish(spec, "MODIFIED", marked)
            return marked
        return self._remove(spec, namespace, name)

    def _remove(self, spec: ResourceSpec, namespace: str | None, name: str) -> dict[str, Any]:
        key = self.key(spec, namespace, name)
        last = {**self.objects[key].raw}
        last["metadata"] = {**last["metadata"], "resourceVersion": str(self._next_revision())}
        self.objects[key].delete()
        self._publish(spec, "DELETED", last)
        if spec.plural == "customresourcedefinitions" and spec.group == CRD_RESOURCE[0]:
            self.registry.unregister_crd(last)
        if spec.plural == "namespaces" and not spec.group:
            self._remove_namespace_contents(name)
        return last

    def _remove_namespace_contents(self, namespace: str) -> None:
        for (resource, obj_namespace, obj_name), obj in list(self.objects.items()):
            if obj_namespace == namespace and not obj.deleted:
                spec = self.registry.lookup(resource.group, resource.version, resource.plural)
                self._remove(spec, namespace, obj_name)

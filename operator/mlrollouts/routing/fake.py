"""An in-memory ObjectClient with the API server's write semantics, for fast tests of the routers' patch logic.

Merge patch follows RFC 7386 (null deletes, lists replaced), JSON patch RFC 6902 (add, remove, replace, test);
every write bumps `metadata.resourceVersion` and a replace with a stale one is a conflict, as on a real server.
Server-side apply is a merge of the sent fields (lists replace: the routers own atomic lists only), with the
sent resourceVersion as a precondition; `applied` keeps every apply body so tests see exactly what was sent.
"""

from __future__ import annotations

import copy
from typing import Any

from mlrollouts.routing.kube import ObjectConflict, ObjectNotFound, PatchType, describe

Key = tuple[str, str, str, str]


class FakeKubeObjects:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.writes = 0
        self.applied: list[tuple[Key, dict[str, Any], bool]] = []
        self._version = 0

    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as if it had been created (tests seed VirtualServices, HTTPRoutes, Deployments)."""
        meta = obj["metadata"]
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = self._next_version()
        self.objects[(obj["apiVersion"], plural, meta.get("namespace", "default"), meta["name"])] = stored
        return copy.deepcopy(stored)

    def stored(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._find(api_version, plural, namespace, name))

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return self.stored(api_version, plural, namespace, name)

    async def patch(
        self,
        api_version: str,
        plural: str,
        namespace: str,
        name: str,
        body: Any,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        metadata_only: bool = False,
    ) -> dict[str, Any]:
        """A status-subresource patch is applied as a patch of the whole object: the fake keeps no split."""
        current = self._find(api_version, plural, namespace, name)
        if patch_type == "merge":
            proposed = merge_patch(current, body)
        else:
            proposed = json_patch(current, body, describe(plural, namespace, name))
        written = self._write((api_version, plural, namespace, name), proposed)
        return {"metadata": written["metadata"]} if metadata_only else written

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        key = (api_version, plural, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise ObjectConflict(f"{describe(plural, namespace, key[3])} already exists")
        return self._write(key, copy.deepcopy(body))

    async def replace(
        self, api_version: str, plural: str, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        current = self._find(api_version, plural, namespace, name)
        sent = (body.get("metadata") or {}).get("resourceVersion")
        if sent is not None and sent != current["metadata"]["resourceVersion"]:
            raise ObjectConflict(f"{describe(plural, namespace, name)} changed while it was being updated")
        return self._write((api_version, plural, namespace, name), copy.deepcopy(body))

    async def apply(
        self, api_version: str, plural: str, namespace: str, name: str, body: dict[str, Any], force: bool = False
    ) -> dict[str, Any]:
        """A missing object is ObjectNotFound, as KubeObjects.apply reports it (it undoes the server's create)."""
        key = (api_version, plural, namespace, name)
        current = self._find(*key)
        sent = (body.get("metadata") or {}).get("resourceVersion")
        if sent is not None and sent != current["metadata"]["resourceVersion"]:
            raise ObjectConflict(f"{describe(plural, namespace, name)} changed while it was being updated")
        self.applied.append((key, copy.deepcopy(body), force))
        return self._write(key, merge_patch(current, body))

    async def get_scale(self, namespace: str, name: str) -> int:
        deployment = self._find("apps/v1", "deployments", namespace, name)
        return int(deployment.get("spec", {}).get("replicas", 1))

    async def apply_scale(self, namespace: str, name: str, replicas: int) -> int:
        key = ("apps/v1", "deployments", namespace, name)
        body = {"spec": {"replicas": replicas}}
        self.applied.append((key, body, True))
        self._write(key, merge_patch(self._find(*key), body))
        return replicas

    def _find(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self.objects[(api_version, plural, namespace, name)]
        except KeyError:
            raise ObjectNotFound(plural, namespace, name) from None

    def _write(self, key: Key, proposed: dict[str, Any]) -> dict[str, Any]:
        proposed.setdefault("metadata", {})["resourceVersion"] = self._next_version()
        self.objects[key] = proposed
        self.writes += 1
        return copy.deepcopy(proposed)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null removes a key, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: dict[str, Any], operations: list[dict[str, Any]], what: str) -> dict[str, Any]:
    """RFC 6902 add/remove/replace/test; a failed test is a conflict (the object is not what the writer read)."""
    document = copy.deepcopy(target)
    for operation in operations:
        op, path = operation["op"], operation["path"]
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        container: Any = document
        for part in parents:
            container = container[int(part)] if isinstance(container, list) else container[part]
        if op == "test":
            actual = container[int(last)] if isinstance(container, list) else container.get(last)
            if actual != operation["value"]:
                raise ObjectConflict(f"{what}: {path} is {actual!r}, expected {operation['value']!r}")
        elif op == "remove":
            del container[int(last) if isinstance(container, list) else last]
        elif op in ("add", "replace"):
            value = copy.deepcopy(operation["value"])
            if isinstance(container, list):
                if last == "-":
                    container.append(value)
                elif op == "add":
                    container.insert(int(last), value)
                else:
                    container[int(last)] = value
            else:
                if op == "replace" and last not in container:
                    raise ValueError(f"{what}: cannot replace missing {path}")
                container[last] = value
        else:
            raise ValueError(f"{what}: JSON patch op {op!r} is not supported by FakeKubeObjects")
    return document

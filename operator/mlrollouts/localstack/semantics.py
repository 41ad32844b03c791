"""How a real API server treats object writes, as pure functions over dicts.

Kept apart from the HTTP layer so the rules (metadata the server owns, generation, optimistic
concurrency, status subresource isolation, patch flavours) read in one place.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import yaml

_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what the API server uses for generateName
SERVER_OWNED_METADATA = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "namespace", "name")


class ApiError(Exception):
    """An error answered as a `v1 Status` with the code kubectl and kopf expect."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass
class ResourceSpec:
    """What the emulator knows about one served resource (from discovery data or a CRD)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    subresources: set[str] = field(default_factory=set)
    printer_columns: list[dict[str, Any]] = field(default_factory=list)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`plural.group`, as the API server names the resource in its error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def not_found(self, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{self.qualified} "{name}" not found')

    def conflict(self, name: str) -> ApiError:
        return ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {self.qualified} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
        )


def now_timestamp() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generated_name(prefix: str) -> str:
    return prefix + "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))


def _meaningful(obj: Mapping[str, Any], spec: ResourceSpec) -> dict[str, Any]:
    """The part whose change bumps `metadata.generation` (not metadata, not status if separate)."""
    skipped = {"metadata", "status"} if "status" in spec.subresources else {"metadata"}
    return {key: value for key, value in obj.items() if key not in skipped}


def _merge_string_data(obj: dict[str, Any], spec: ResourceSpec) -> None:
    """A Secret's stringData is write-only: the real server folds it into data (base64, winning over a key
    there) and stores neither the field nor its text; a client reading data must see what it wrote."""
    if spec.plural != "secrets" or spec.group or "stringData" not in obj:
        return
    data = dict(obj.get("data") or {})
    for key, value in (obj.pop("stringData") or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    obj["data"] = data


def new_object(body: Mapping[str, Any], spec: ResourceSpec, namespace: str | None, revision: int) -> dict[str, Any]:
    """The stored form of a created object: server-owned metadata filled in, status dropped if separate."""
    obj = copy.deepcopy(dict(body))
    metadata = dict(obj.get("metadata") or {})
    if not metadata.get("name"):
        if not metadata.get("generateName"):
            raise ApiError(
                422, "Invalid", f"{spec.kind}: metadata.name: Required value: name or generateName is required"
            )
        metadata["name"] = generated_name(metadata["generateName"])
    if spec.namespaced:
        if metadata.get("namespace") and namespace and metadata["namespace"] != namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        metadata["namespace"] = namespace or metadata.get("namespace") or "default"
    else:
        metadata.pop("namespace", None)
    metadata.update(
        uid=str(uuid.uuid4()), resourceVersion=str(revision), generation=1, creationTimestamp=now_timestamp()
    )
    metadata.pop("deletionTimestamp", None)
    obj["metadata"] = metadata
    obj["apiVersion"], obj["kind"] = spec.api_version, spec.kind
    if "status" in spec.subresources:
        obj.pop("status", None)
    if spec.plural == "namespaces":
        obj["status"] = {"phase": "Active"}
    _merge_string_data(obj, spec)
    return obj


def check_version(old: Mapping[str, Any], proposed: Mapping[str, Any], spec: ResourceSpec) -> None:
    """Optimistic concurrency: a resourceVersion in the request must be the current one."""
    wanted = (proposed.get("metadata") or {}).get("resourceVersion")
    if wanted and str(wanted) != old["metadata"]["resourceVersion"]:
        raise spec.conflict(old["metadata"]["name"])


def updated_object(
    old: Mapping[str, Any], proposed: Mapping[str, Any], spec: ResourceSpec, subresource: str | None, revision: int
) -> dict[str, Any] | None:
    """The next stored version after a write, or None when nothing changed (no new resourceVersion)."""
    check_version(old, proposed, spec)
    if subresource == "status":
        new = copy.deepcopy(dict(old))
        if "status" in proposed:
            new["status"] = copy.deepcopy(proposed["status"])
        else:
            new.pop("status", None)
    else:
        new = copy.deepcopy(dict(proposed))
        if "status" in spec.subresources:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        metadata = dict(new.get("metadata") or {})
        for key in SERVER_OWNED_METADATA:
            if key in old["metadata"]:
                metadata[key] = old["metadata"][key]
            else:
                metadata.pop(key, None)
        new["metadata"] = metadata
        _merge_string_data(new, spec)
    new["apiVersion"], new["kind"] = spec.api_version, spec.kind
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
    if new == old:
        return None
    if _meaningful(new, spec) != _meaningful(old, spec):
        new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
    new["metadata"]["resourceVersion"] = str(revision)
    return new


def decode_body(body: bytes, content_type: str) -> Any:
    """The request body as data; protobuf (which kubectl sends for some built-ins) is refused clearly."""
    if "protobuf" in content_type:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the local API emulator accepts JSON only, not protobuf; use 'kubectl apply -f' with a manifest",
        )
    if not body.strip():
        return {}
    try:
        if "apply-patch+yaml" in content_type:
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as error:
        raise ApiError(400, "BadRequest", f"the request body is not valid JSON/YAML: {error}") from error


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, null deletes, everything else (lists too) replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def patched(current: Mapping[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply a PATCH body of any flavour; strategic merge is treated as a merge patch (lists replace)."""
    if "json-patch" in content_type:
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
        try:
            return jsonpatch.apply_patch(copy.deepcopy(dict(current)), patch)
        except jsonpatch.JsonPatchTestFailed as error:
            raise ApiError(422, "Invalid", f"the JSON patch test operation failed: {error}") from error
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
            raise ApiError(422, "Invalid", f"the JSON patch cannot be applied: {error}") from error
    if not isinstance(patch, Mapping):
        raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
    return merge_patch(current, patch)

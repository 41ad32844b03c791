"""The status writes benchmarks/apicost.py compares: what a tick changes, and the request shapes (levers).

A shape turns (the status stored, the status a tick wants, the resourceVersion read) into one HTTP request; all
are guarded by the resourceVersion as the operator's write is, so a refused write would show as a 409/422.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlrollouts.localstack.replicas import GROUP, PLURAL, VERSION

JSON = "application/json"
METADATA_ONLY = f"{JSON};as=PartialObjectMetadata;g=meta.k8s.io;v=v1, {JSON}"
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    content_type: str
    accept: str
    params: tuple[tuple[str, str], ...] = ()


def status_path(name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/{name}/status"


def leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Every scalar of a JSON value by its path (lists by index)."""
    if isinstance(value, dict):
        found: dict[Path, Any] = {}
        for key, item in value.items():
            found.update(leaves(item, (*prefix, key)))
        return found
    if isinstance(value, list):
        found = {}
        for index, item in enumerate(value):
            found.update(leaves(item, (*prefix, index)))
        return found
    return {prefix: value}


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> list[Path]:
    """The scalars one tick changed (or added), from two statuses of one experiment a tick apart."""
    old, new = leaves(before), leaves(after)
    return sorted((path for path, value in new.items() if old.get(path, object()) != value), key=str)


def _set(target: Any, path: Path, value: Any) -> None:
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _get(target: Any, path: Path) -> Any:
    for key in path:
        target = target[key]
    return target


def advance(status: dict[str, Any], paths: list[Path], now: datetime) -> dict[str, Any]:
    """The next tick's status: every scalar that a real tick changed changes again (numbers grow a little,
    timestamps become `now`, anything else keeps its value); the rest is left as it was."""
    nxt = copy.deepcopy(status)
    stamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    for path in paths:
        try:
            value = _get(nxt, path)
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            _set(nxt, path, value + 1)
        elif isinstance(value, float):
            _set(nxt, path, value * (1 + 1e-6) + 1e-9)
        elif isinstance(value, str) and value[:2] == "20" and value.endswith("Z"):
            _set(nxt, path, stamp)
    return nxt


def merge_diff(before: Any, after: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `before` into `after`: only what changed, null for removals."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return after
    patch: dict[str, Any] = {}
    for key, value in after.items():
        if key not in before:
            patch[key] = value
        elif before[key] != value:
            patch[key] = merge_diff(before[key], value)
    for key in before:
        if key not in after:
            patch[key] = None
    return patch


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def operator(name: str, _old: dict[str, Any], new: dict[str, Any], rv: str) -> Request:
    """What the operator sends today (controller/ports.py write_status): a JSON patch, test + replace the status."""
    body = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/status", "value": new},
    ]
    return Request("PATCH", status_path(name), _dumps(body), "application/json-patch+json", METADATA_ONLY)


def full_response(name: str, old: dict[str, Any], new: dict[str, Any], rv: str) -> Request:
    """As `operator`, answered with the whole object (before the metadata-only Accept)."""
    request = operator(name, old, new, rv)
    return Request(request.method, request.path, request.body, request.content_type, JSON)


def merge_changed(name: str, old: dict[str, Any], new: dict[str, Any], rv: str) -> Request:
    """A merge patch of only what changed, guarded by metadata.resourceVersion (a 409 if it moved)."""
    body = {"metadata": {"resourceVersion": rv}, "status": merge_diff(old, new)}
    return Request("PATCH", status_path(name), _dumps(body), "application/merge-patch+json", METADATA_ONLY)


def jsonpatch_changed(name: str, old: dict[str, Any], new: dict[str, Any], rv: str) -> Request:
    """A JSON patch replacing only the changed scalars (test of the resourceVersion first)."""
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}]
    old_leaves = leaves(old)
    for path, value in leaves(new).items():
        if old_leaves.get(path, object()) != value:
            pointer = "/status/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)
            ops.append({"op": "add", "path": pointer, "value": value})
    return Request("PATCH", status_path(name), _dumps(ops), "application/json-patch+json", METADATA_ONLY)


def apply(name: str, _old: dict[str, Any], new: dict[str, Any], rv: str) -> Request:
    """Server-side apply of the status (field manager mlrollouts, forced), guarded by metadata.resourceVersion."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelExperiment",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        "status": new,
    }
    params = (("fieldManager", "mlrollouts"), ("force", "true"))
    return Request("PATCH", status_path(name), _dumps(body), "application/apply-patch+yaml", METADATA_ONLY, params)


def ignore_fields(name: str, old: dict[str, Any], new: dict[str, Any], rv: str) -> Request:
    """As `operator`, with fieldValidation=Ignore: no strict decoding or unknown-field report (default Warn)."""
    request = operator(name, old, new, rv)
    return Request(
        *(request.method, request.path, request.body, request.content_type, request.accept),
        (("fieldValidation", "Ignore"),),
    )


def lean(name: str, old: dict[str, Any], new: dict[str, Any], rv: str) -> Request:
    """As `operator` without status.conditions (1.1 of 3.7 KB): what that much less status saves."""
    return operator(name, old, {k: v for k, v in new.items() if k != "conditions"}, rv)


def minimal(name: str, old: dict[str, Any], new: dict[str, Any], rv: str) -> Request:
    """As `operator` with a status of phase, reason, message and lastAnalysisAt only: the most shrinking could save."""
    kept = ("phase", "reason", "message", "lastAnalysisAt")
    return operator(name, old, {k: v for k, v in new.items() if k in kept}, rv)


Shape = Callable[[str, dict[str, Any], dict[str, Any], str], Request]
SHAPES: dict[str, Shape] = {
    "operator": operator,
    "full-response": full_response,
    "merge-changed": merge_changed,
    "jsonpatch-changed": jsonpatch_changed,
    "apply": apply,
    "ignore-fields": ignore_fields,
    "lean": lean,
    "minimal": minimal,
}
"""Request shapes; apicost.py adds `noop` (the status unchanged) and `nowatch` (no watch open) on `operator`."""

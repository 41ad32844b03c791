"""`meta.k8s.io/v1` Table responses, which kubectl asks for to print a CRD's printer columns.

The JSONPath subset covers what printer columns use: `.a.b`, `.a[0].b` and `.a[?(@.type=="Ready")].status`.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

TABLE_ACCEPT = re.compile(r"as=Table")
_STEP = re.compile(r"""\.([\w-]+)|\[(\d+)\]|\[\?\(@\.([\w-]+)\s*==\s*["']([^"']*)["']\)\]""")

NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "priority": 0, "description": "Name"}
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "priority": 0}


def wants_table(accept: str | None) -> bool:
    """Whether the client (kubectl get) asked for a Table rather than the objects themselves."""
    return bool(accept and TABLE_ACCEPT.search(accept))


def evaluate_jsonpath(obj: Any, path: str) -> Any:
    """The value at `path` in `obj`, or None when any step is missing (kubectl prints `<none>`)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.removeprefix("$")
    position, current = 0, obj
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        position = step.end()
        key, index, filter_key, filter_value = step.groups()
        if key is not None:
            current = current.get(key) if isinstance(current, Mapping) else None
        elif index is not None:
            items = current if isinstance(current, Sequence) and not isinstance(current, str) else []
            current = items[int(index)] if int(index) < len(items) else None
        else:
            items = current if isinstance(current, list) else []
            matches = [
                item for item in items if isinstance(item, Mapping) and str(item.get(filter_key)) == filter_value
            ]
            current = matches[0] if matches else None
        if current is None:
            return None
    return current


def human_duration(seconds: float) -> str:
    """Ages as kubectl shows them (k8s.io/apimachinery duration.HumanDuration)."""
    if seconds < -1:
        return "<invalid>"
    total = max(int(seconds), 0)
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 120:
        return f"{total}s"
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    years = days // 365
    return f"{years}y{days % 365}d" if years < 8 and days % 365 else f"{years}y"


def _age(timestamp: Any, now: datetime.datetime) -> str | None:
    if not isinstance(timestamp, str):
        return None
    created = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return human_duration((now - created).total_seconds())


def table_columns(printer_columns: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Name first, then the CRD's columns; Age at the end unless the CRD already shows it."""
    columns = [dict(column) for column in printer_columns]
    if not any(column.get("name") == "Age" for column in columns):
        columns.append(dict(AGE_COLUMN))
    return [dict(NAME_COLUMN), *columns]


def _cell(obj: Mapping[str, Any], column: Mapping[str, Any], now: datetime.datetime) -> Any:
    if column.get("format") == "name":
        return obj.get("metadata", {}).get("name")
    value = evaluate_jsonpath(obj, str(column.get("jsonPath", "")))
    if column.get("type") == "date":
        return _age(value, now)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def _row_object(obj: Mapping[str, Any], include_object: str | None) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return dict(obj)
    return {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj.get("metadata", {})}


def render_table(
    objects: Sequence[Mapping[str, Any]],
    printer_columns: Sequence[Mapping[str, Any]],
    resource_version: str,
    include_object: str | None = None,
) -> dict[str, Any]:
    """One Table with a row per object; `include_object` follows the `includeObject` query parameter."""
    now = datetime.datetime.now(tz=datetime.UTC)
    columns = table_columns(printer_columns)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [_cell(obj, column, now) for column in columns]}
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    definitions = [
        {
            "name": column["name"],
            "type": "string" if column.get("type") == "date" else column.get("type", "string"),
            "format": column.get("format", ""),
            "description": column.get("description", ""),
            "priority": column.get("priority", 0),
        }
        for column in columns
    ]
    return {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "Table",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }

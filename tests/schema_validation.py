"""Validate objects the project writes against upstream schemas: CRDs in tests/data/schemas, built-ins offline.

`validate_custom_object(obj)` finds the CustomResourceDefinition for the object's apiVersion and kind among
tests/data/schemas/*.crd.yaml and checks it against that version's openAPIV3Schema with jsonschema
(`x-kubernetes-*` extensions and CEL rules are not evaluated). Built-in kinds go to kubernetes-validate.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

SCHEMA_DIR = Path(__file__).parent / "data" / "schemas"
KUBERNETES_VERSION = "1.32"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def crd_documents(filename: str) -> tuple[dict[str, Any], ...]:
    """The CustomResourceDefinitions in one schema file, parsed once per session (libyaml when available)."""
    documents = yaml.load_all((SCHEMA_DIR / filename).read_text(), Loader=_Loader)
    return tuple(d for d in documents if d and d.get("kind") == "CustomResourceDefinition")


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → openAPIV3Schema for every served version of every CRD in the schema folder."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.crd.yaml")):
        for document in crd_documents(path.name):
            spec = document["spec"]
            for version in spec["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema is not None:
                    schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = _strip_extensions(schema)
    return schemas


def _strip_extensions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_extensions(v) for k, v in node.items() if not str(k).startswith("x-kubernetes-")}
    if isinstance(node, list):
        return [_strip_extensions(item) for item in node]
    return node


def validate_custom_object(obj: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError (or LookupError when no schema is known) if obj is not valid."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    schema = crd_schemas().get(key)
    if schema is not None:
        jsonschema.Draft7Validator(schema).validate(obj)
        return
    if "." not in key[0].split("/")[0] or key[0].split("/")[0].endswith(".k8s.io"):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            return
        except kubernetes_validate.SchemaNotFoundError:
            pass
    raise LookupError(f"no schema for apiVersion {key[0]} kind {key[1]} in {SCHEMA_DIR} or kubernetes-validate")

"""The ModelExperiment CustomResourceDefinition, generated from the pydantic models.

The models are the single source of truth: this module turns their JSON Schema (draft 2020-12, with
$refs and `anyOf: [X, null]` for optional fields) into the *structural* OpenAPI v3.0 schema the API server
requires: everything inlined, every node typed, OpenAPI 3.0 boolean `exclusiveMinimum`, no `title`.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from mlrollouts import GROUP, KIND, PLURAL, VERSION
from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import ModelExperimentStatus

CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_FILE = f"crds/{CRD_NAME}.yaml"

# Key order in the emitted YAML: the parts a reader looks for first.
_KEY_ORDER = ("type", "description", "format", "enum", "default", "required", "properties", "items")
_DROPPED_KEYS = {"title", "$defs", "additionalProperties", "anyOf", "allOf", "$ref", "const"}
_SCALAR_TYPES = (str, int, float, bool)

PRINTER_COLUMNS = [
    {"name": "Strategy", "type": "string", "jsonPath": ".spec.strategy"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "description": "Why the phase is what it is"},
    # Not .status.weights: kubectl would render that map raw ({"churn-v2":90,"churn-v3":10}).
    {"name": "Weight", "type": "string", "jsonPath": ".status.weightSummary", "description": "Challengers' percent"},
    {"name": "Decision", "type": "string", "jsonPath": ".status.analysis.decision"},
    {"name": "P", "type": "number", "jsonPath": ".status.analysis.pValue"},
    {"name": "P(better)", "type": "number", "jsonPath": ".status.analysis.probabilityBetter"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class SchemaConversionError(ValueError):
    """A model uses a construct that has no structural OpenAPI equivalent (e.g. a union of two types)."""


def structural_schema(model: type[BaseModel], *, for_status: bool = False) -> dict[str, Any]:
    """The model's schema as a structural OpenAPI v3.0 schema.

    Status schemas carry no `required` and no defaults: the operator writes status whole, and defaults
    there would make the API server invent values the operator never wrote. Nor CEL rules: the operator,
    the only writer, validates status with pydantic, and rules there cost CEL on every status write.
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}), for_status=for_status, path=model.__name__)


def _convert(node: dict[str, Any], defs: dict[str, Any], *, for_status: bool, path: str) -> dict[str, Any]:
    node = _resolve(node, defs, path)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "default":
            if value is None or for_status or not isinstance(value, _SCALAR_TYPES):
                continue
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            value = True
        elif key == "properties":
            value = {
                name: _convert(child, defs, for_status=for_status, path=f"{path}.{name}")
                for name, child in value.items()
            }
        elif key == "items":
            value = _nullable(value, _convert(value, defs, for_status=for_status, path=f"{path}[]"))
            if node.get("x-kubernetes-list-type") == "map":  # the API server wants the keys required, even in status
                value = {**value, "required": list(node["x-kubernetes-list-map-keys"])}
                value = {k: value[k] for k in sorted(value, key=_key_rank)}
        elif key in ("required", "x-kubernetes-validations") and for_status:
            continue
        out[key] = copy.deepcopy(value)
    if isinstance(node.get("additionalProperties"), dict):
        value = node["additionalProperties"]
        out["additionalProperties"] = _nullable(value, _convert(value, defs, for_status=for_status, path=f"{path}{{}}"))
    if "const" in node:
        out["enum"] = [node["const"]]
    if "type" not in out:
        raise SchemaConversionError(f"{path}: no type after conversion: {node}")
    return {key: out[key] for key in sorted(out, key=_key_rank)}


def _nullable(source: dict[str, Any], converted: dict[str, Any]) -> dict[str, Any]:
    """`nullable: true` where a list item or map value may be null (e.g. an unbounded end of a confidence
    interval, [-0.03, null]): an omitted property means null, but an item has no way to be omitted, and the
    real API server refuses null for a plain `type: number` (found when the suites moved onto it)."""
    if any(branch.get("type") == "null" for branch in source.get("anyOf", [])):
        return {**converted, "nullable": True}
    return converted


def _resolve(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Inline $ref / allOf[$ref] and drop the `null` branch of optional fields; site keys win."""
    node = dict(node)
    if "anyOf" in node:
        union = node.pop("anyOf")
        branches = [b for b in union if b.get("type") != "null"]
        if len(branches) != 1:
            raise SchemaConversionError(f"{path}: a union of several types is not structural: {branches}")
        nullable = path.endswith("[]") and len(branches) < len(union)
        node = {**_resolve(branches[0], defs, path), **node}
        if nullable:
            # The API server prunes a null object field before validation, but not a null list item: an
            # Optional item (e.g. an unbounded end of a confidence interval) must say nullable, or it is refused.
            node["nullable"] = True
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**_resolve(node.pop("allOf")[0], defs, path), **node}
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**_resolve(target, defs, path), **node}
    return node


def _key_rank(key: str) -> tuple[int, str]:
    return (_KEY_ORDER.index(key), key) if key in _KEY_ORDER else (len(_KEY_ORDER), key)


def custom_resource_definition(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    namespaced: bool,
    description: str,
    properties: dict[str, Any],
    printer_columns: list[dict[str, Any]],
    status_subresource: bool,
) -> dict[str, Any]:
    """The CustomResourceDefinition around one kind's schema (`properties`: spec and, if written, status); shared by
    ModelExperiment and the metric template kinds so that their names, version and category cannot drift apart."""
    root = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            **properties,
        },
    }
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True, "schema": {"openAPIV3Schema": root}}
    if status_subresource:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = printer_columns
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["mlrollouts"],
            },
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [version],
        },
    }


def generate_crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition object."""
    spec = structural_schema(ModelExperimentSpec)
    spec["description"] = "The experiment: variants, strategy, traffic provider and analysis (DESIGN §2)."
    status = structural_schema(ModelExperimentStatus, for_status=True)
    status["description"] = "Written by the operator only; the durable state a restarted operator continues from."
    # One writer replaces the status whole every tick: atomic, the API server's managedFields record `f:status`
    # instead of every leaf (3 of a 9 KB object's KB), decoded and recomputed on every write.
    status["x-kubernetes-map-type"] = "atomic"
    return custom_resource_definition(
        kind=KIND,
        plural=PLURAL,
        short_names=["mexp"],
        namespaced=True,
        description="A controlled experiment between ML model versions: canary, A/B/n, shadow or bandit.",
        properties={"spec": spec, "status": status},
        printer_columns=copy.deepcopy(PRINTER_COLUMNS),
        status_subresource=True,
    )


def render_crd_yaml() -> str:
    """The CRD as committed in crds/: a header saying how to regenerate it, then the YAML."""
    header = "# Generated from operator/mlrollouts/api by `make crds` (mlrollouts crd). Do not edit by hand.\n"
    return header + yaml.safe_dump(generate_crd(), sort_keys=False, width=120, allow_unicode=True)


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the served version."""
    return generate_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def structural_problems(schema: dict[str, Any], path: str = "") -> list[str]:
    """Violations of the API server's structural-schema rules, as 'path: what' strings (empty when structural)."""
    problems = []
    if "$ref" in schema:
        problems.append(f"{path or '.'}: $ref is not allowed")
    if "type" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path or '.'}: every node needs a type")
    for combinator in ("anyOf", "allOf", "oneOf", "not"):
        if combinator in schema:
            problems.append(f"{path or '.'}: {combinator} is not emitted (value validation only, no types)")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path or '.'}: properties and additionalProperties are mutually exclusive")
    if schema.get("type") == "array" and "items" not in schema:
        problems.append(f"{path or '.'}: an array needs items")
    for name, child in schema.get("properties", {}).items():
        problems.extend(structural_problems(child, f"{path}.{name}"))
    if isinstance(schema.get("items"), dict):
        problems.extend(structural_problems(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        problems.extend(structural_problems(schema["additionalProperties"], f"{path}{{}}"))
    return problems

"""Offline check of a manifest against the generated CRD, as the API server would do it.

Three passes, like kube-apiserver with strict field validation: unknown fields (which structural pruning
would silently drop), the OpenAPI schema (types, enums, bounds, patterns, required), then every
`x-kubernetes-validations` CEL rule, evaluated with cel-python on the defaulted object. Kubernetes' CEL
list extensions that cel-python lacks (`isSorted()`, `sum()`) are registered as functions.
"""

from __future__ import annotations

import copy
import difflib
import functools
import itertools
import re
from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema
from celpy import celtypes

from mlrollouts.api.crd import openapi_schema
from mlrollouts.api.errors import SpecProblem, field_path
from mlrollouts.api.experiment import PATTERN_HINTS

Path = tuple[str | int, ...]
SIZE_LIMITS = frozenset({"maxItems", "maxProperties", "maxLength"})


def validate_manifest(obj: dict[str, Any]) -> list[SpecProblem]:
    """Problems the API server would report for this ModelExperiment (empty when it would accept it)."""
    schema = served_schema()
    problems = list(_unknown_fields(obj, schema, ()))
    errors = list(_validator().iter_errors(obj))
    problems.extend(sorted((_schema_problem(e) for e in errors), key=lambda p: p.path))
    if any(e.validator in SIZE_LIMITS for e in errors):
        # As the API server bounds a rule's cost by maxItems/maxLength: an oversized list never reaches CEL
        # (400 challengers made the pairwise uniqueness rules take a minute).
        return problems
    broken = {p.path for p in problems}
    problems.extend(_cel_problems(apply_defaults(obj, schema), schema, (), broken))
    return problems


def render_path(path: Path) -> str:
    """`spec.challengers[1].name`: the kubectl / CEL form the Python layer uses too (errors.field_path)."""
    return field_path(path)


@functools.cache
def served_schema() -> dict[str, Any]:
    """The generated openAPIV3Schema, built once per process; treat it as read-only."""
    return openapi_schema()


@functools.cache
def _validator() -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schemas use draft-4 semantics (boolean exclusiveMinimum); x-kubernetes-* keys are ignored.
    return jsonschema.Draft4Validator(served_schema())


def _schema_problem(error: jsonschema.ValidationError) -> SpecProblem:
    path = tuple(error.absolute_path)
    if error.validator == "required":
        missing = re.match(r"^'(.+)' is a required property", error.message)
        return SpecProblem(render_path((*path, missing.group(1) if missing else "?")), "required field is missing")
    if error.validator == "pattern" and error.validator_value in PATTERN_HINTS:
        return SpecProblem(render_path(path), f"{error.instance!r} {PATTERN_HINTS[error.validator_value]}")
    if error.validator == "enum":
        allowed = " | ".join(str(v) for v in error.validator_value)
        return SpecProblem(render_path(path), f"{error.instance!r} is not allowed: use one of {allowed}")
    return SpecProblem(render_path(path), error.message)


def _unknown_fields(value: Any, schema: dict[str, Any], path: Path) -> Iterator[SpecProblem]:
    if isinstance(value, dict) and "properties" in schema:
        known = list(schema["properties"])
        for key, child in value.items():
            if key in schema["properties"]:
                yield from _unknown_fields(child, schema["properties"][key], (*path, key))
            else:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(sorted(known))}"
                yield SpecProblem(render_path((*path, key)), f"unknown field; {hint}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, child in value.items():
            yield from _unknown_fields(child, schema["additionalProperties"], (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            yield from _unknown_fields(child, schema["items"], (*path, index))


def apply_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    """A copy of obj with the schema's defaults filled in, as the API server does before CEL runs."""
    obj = copy.deepcopy(obj)
    _fill_defaults(obj, schema)
    return obj


def _fill_defaults(value: Any, schema: dict[str, Any]) -> None:
    if isinstance(value, dict) and "properties" in schema:
        for key, child_schema in schema["properties"].items():
            if key not in value and "default" in child_schema:
                value[key] = copy.deepcopy(child_schema["default"])
            if key in value:
                _fill_defaults(value[key], child_schema)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for child in value.values():
            _fill_defaults(child, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for child in value:
            _fill_defaults(child, schema["items"])


def _cel_problems(value: Any, schema: dict[str, Any], path: Path, broken: set[str]) -> Iterator[SpecProblem]:
    """Evaluate every rule where its node is present, children first (as the API server reports them)."""
    if isinstance(value, dict) and "properties" in schema:
        for key, child_schema in schema["properties"].items():
            if key in value:
                yield from _cel_problems(value[key], child_schema, (*path, key), broken)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, child in value.items():
            yield from _cel_problems(child, schema["additionalProperties"], (*path, key), broken)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            yield from _cel_problems(child, schema["items"], (*path, index), broken)
    for rule in schema.get("x-kubernetes-validations", []):
        where = render_path(path) + rule.get("fieldPath", "")
        try:
            ok = evaluate_rule(rule["rule"], value)
        except celpy.CELEvalError as error:
            # A node the schema layer already rejected (wrong type, missing field) cannot be judged by CEL.
            here = render_path(path)
            if not any(b == here or b.startswith((here + ".", here + "[")) for b in broken):
                yield SpecProblem(where, f"rule could not be evaluated ({error.args[0]}): {rule['rule']}")
            continue
        if not ok:
            yield SpecProblem(where, rule["message"])


def evaluate_rule(rule: str, self_value: Any) -> bool:
    """Evaluate one CEL rule with `self` bound to the node's value; CELEvalError when it cannot."""
    result = _program(rule).evaluate({"self": celpy.json_to_cel(self_value)})
    if isinstance(result, celpy.CELEvalError):
        raise result
    if not isinstance(result, celtypes.BoolType):
        raise celpy.CELEvalError(f"rule returned {type(result).__name__}, not bool")
    return bool(result)


@functools.cache
def _program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule), functions=KUBERNETES_LIST_FUNCTIONS)


def _is_sorted(items: celtypes.ListType) -> celtypes.BoolType:
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


def _sum(items: celtypes.ListType) -> Any:
    if not items:
        return celtypes.IntType(0)
    total = items[0]
    for item in items[1:]:
        total = total + item
    return total


# Kubernetes' CEL list library (k8s.io/apiserver/pkg/cel/library/lists.go), the parts our rules use.
KUBERNETES_LIST_FUNCTIONS = {"isSorted": _is_sorted, "sum": _sum}

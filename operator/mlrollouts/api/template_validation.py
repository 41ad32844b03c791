"""Offline check of a MetricTemplate / ClusterMetricTemplate manifest against its generated CRD, as the API
server would do it (unknown fields, schema, CEL rules): the passes of crd_validation, on the template schema."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema

from mlrollouts.api.crd_validation import _cel_problems, _schema_problem, _unknown_fields, apply_defaults
from mlrollouts.api.errors import SpecError, SpecProblem
from mlrollouts.api.template_crd import generate_template_crd
from mlrollouts.api.templates import TEMPLATE_KINDS, parse_template


@functools.cache
def template_schema(kind: str) -> dict[str, Any]:
    return generate_template_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate_template_manifest(obj: dict[str, Any]) -> list[SpecProblem]:
    """Problems the API server would report for this template (empty when it would accept it)."""
    kind = obj.get("kind")
    if kind not in TEMPLATE_KINDS:
        return [SpecProblem("kind", f"must be one of {', '.join(TEMPLATE_KINDS)}, got {kind!r}")]
    schema = template_schema(str(kind))
    problems = list(_unknown_fields(obj, schema, ()))
    errors = list(jsonschema.Draft4Validator(schema).iter_errors(obj))
    problems.extend(sorted((_schema_problem(e) for e in errors), key=lambda p: p.path))
    problems.extend(_cel_problems(apply_defaults(obj, schema), schema, (), {p.path for p in problems}))
    return problems


def check_template(obj: dict[str, Any]) -> list[SpecProblem]:
    """Both layers, the operator's first; a CRD-layer problem at a path the operator already named is dropped."""
    try:
        parse_template(obj)
        problems: list[SpecProblem] = []
    except SpecError as error:
        problems = list(error.problems)
    named = {p.path.replace("[", ".").replace("]", "") for p in problems}
    for problem in validate_template_manifest(obj):
        if problem.path not in named:
            problems.append(problem)
            named.add(problem.path)
    return problems

"""The offline CEL evaluator (Kubernetes list extensions included), defaulting, and the round trip
models -> wire -> CRD: what the operator writes is what the API server accepts."""

from __future__ import annotations

import typing

import celpy
import pytest
from api_support import EXAMPLES, load_example
from pydantic import BaseModel

from mlrollouts.api import ModelExperimentSpec, parse_spec
from mlrollouts.api.crd_validation import apply_defaults, evaluate_rule, served_schema, validate_manifest


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("self.isSorted()", [1, 5, 5, 9], True),
        ("self.isSorted()", [1, 9, 5], False),
        ("self.isSorted()", [], True),
        ("self.sum() == 100", [50, 25, 25], True),
        ("self.map(k, self[k]).sum()", {"a": 60, "b": 30}, None),
        ("self.exists_one(x, x == 2)", [1, 2, 3], True),
        ("self.exists_one(x, x == 2)", [2, 2], False),
        ("has(self.a) && !has(self.b)", {"a": 1}, True),
        ("self.all(k, k.startsWith('churn-'))", {"churn-v2": 1, "churn-v3": 2}, True),
        ("size(self) == 2 && self.size() == 2", [7, 8], True),
    ],
)
def test_kubernetes_cel_functions_evaluate(rule: str, value: object, expected: bool | None) -> None:
    if expected is None:
        assert evaluate_rule(rule + " == 90", value) is True
        assert evaluate_rule(rule + " == 100", value) is False
    else:
        assert evaluate_rule(rule, value) is expected


def test_a_rule_that_cannot_be_evaluated_raises() -> None:
    with pytest.raises(celpy.CELEvalError):
        evaluate_rule("self.steps[0] == 1", {"other": 1})
    with pytest.raises(celpy.CELEvalError, match="not bool"):
        evaluate_rule("self.x + 1", {"x": 1})


def test_unevaluable_rule_is_reported_when_the_schema_layer_found_nothing(churn) -> None:
    """A CEL rule erroring at run time is a problem, never a silent pass."""
    schema_node = served_schema()["properties"]["spec"]["properties"]["canary"]
    original = schema_node["x-kubernetes-validations"]
    schema_node["x-kubernetes-validations"] = [{"rule": "self.missing == 1", "message": "never shown"}]
    try:
        problems = validate_manifest(churn)
    finally:
        schema_node["x-kubernetes-validations"] = original
    assert [p.path for p in problems] == ["spec.canary"]
    assert problems[0].message.startswith("rule could not be evaluated")


def test_cel_sees_defaults_like_the_api_server(churn) -> None:
    """primaryMetric.type is absent in most manifests; its CRD default makes the proportion rule apply."""
    del churn["spec"]["analysis"]["primaryMetric"]["type"]
    del churn["spec"]["analysis"]["primaryMetric"]["trials"]
    paths = [p.path for p in validate_manifest(churn)]
    assert paths == ["spec.analysis.primaryMetric"]


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_wire_form_of_every_example_round_trips_through_the_crd(example: str) -> None:
    manifest = load_example(example)
    wire = parse_spec(manifest["spec"]).to_wire()
    assert ModelExperimentSpec.model_validate(wire).to_wire() == wire
    assert validate_manifest({**manifest, "spec": wire}) == []


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_crd_defaults_equal_the_operator_defaults(example: str) -> None:
    """Whatever the API server fills in is exactly what the operator would assume when the field is absent."""
    manifest = load_example(example)
    defaulted = apply_defaults(manifest, served_schema())["spec"]
    wire = parse_spec(manifest["spec"]).to_wire()

    def compare(crd_side: object, model_side: object, path: str) -> None:
        if isinstance(crd_side, dict):
            for key, value in crd_side.items():
                compare(value, model_side[key], f"{path}.{key}")
        elif isinstance(crd_side, list):
            for index, (a, b) in enumerate(zip(crd_side, model_side, strict=True)):
                compare(a, b, f"{path}.{index}")
        else:
            assert crd_side == model_side, path

    compare(defaulted, wire, "spec")


def _spec_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []

    def visit(annotation: object) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in found:
            found.append(annotation)
            for field in annotation.model_fields.values():
                visit(field.annotation)
        for argument in typing.get_args(annotation):
            visit(argument)

    visit(ModelExperimentSpec)
    return found


def _schema_of(model: type[BaseModel]) -> list[dict]:
    """Every CRD node generated from this model (a model can appear at several places)."""
    title_fields = {field.alias or name for name, field in model.model_fields.items()}
    nodes, stack = [], [served_schema()["properties"]["spec"]]
    while stack:
        node = stack.pop()
        if set(node.get("properties", {})) == title_fields:
            nodes.append(node)
        stack.extend(node.get("properties", {}).values())
        stack.extend(n for n in (node.get("items"), node.get("additionalProperties")) if isinstance(n, dict))
    return nodes


def test_every_optional_spec_field_documents_its_default() -> None:
    """An optional field shows its default in the CRD (kubectl explain), or says in words what absence means."""
    undocumented = []
    models = _spec_models()
    assert len(models) >= 15
    for model in models:
        nodes = _schema_of(model)
        assert nodes, model.__name__
        for name, field in model.model_fields.items():
            if field.is_required():
                continue
            schema = nodes[0]["properties"][field.alias or name]
            if "default" not in schema and not schema.get("description"):
                undocumented.append(f"{model.__name__}.{name}")
    assert undocumented == []

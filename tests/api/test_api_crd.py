"""The generated CRD: committed copy up to date, accepted by the upstream CRD schema, structural, and
consistent with the models it comes from."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml
from api_support import ROOT

from mlrollouts.api.crd import (
    CRD_FILE,
    PRINTER_COLUMNS,
    SchemaConversionError,
    generate_crd,
    openapi_schema,
    render_crd_yaml,
    structural_problems,
    structural_schema,
)
from mlrollouts.cli.main import main

K8S_VERSION = "1.32"


def test_committed_crd_matches_the_models() -> None:
    committed = (ROOT / CRD_FILE).read_text()
    assert committed == render_crd_yaml(), f"{CRD_FILE} is stale: run `make crds` and commit the result"


def test_crd_is_accepted_by_the_upstream_customresourcedefinition_schema() -> None:
    kubernetes_validate.validate(generate_crd(), K8S_VERSION, strict=True)


def test_upstream_schema_check_does_reject_a_broken_crd() -> None:
    broken = generate_crd()
    broken["spec"]["scope"] = {"namespaced": True}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_schema_is_structural() -> None:
    assert structural_problems(openapi_schema()) == []


def test_structural_check_finds_refs_untyped_nodes_and_unions() -> None:
    bad = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/x", "type": "object"},
            "b": {"description": "no type"},
            "c": {"type": "string", "anyOf": [{"type": "string"}, {"type": "integer"}]},
            "d": {"type": "array"},
        },
    }
    problems = structural_problems(bad)
    assert problems == [
        ".a: $ref is not allowed",
        ".b: every node needs a type",
        ".c: anyOf is not emitted (value validation only, no types)",
        ".d: an array needs items",
    ]


def test_a_union_of_two_types_cannot_be_converted() -> None:
    from pydantic import BaseModel

    class Ambiguous(BaseModel):
        value: int | str

    with pytest.raises(SchemaConversionError, match=r"Ambiguous\.value"):
        structural_schema(Ambiguous)


def _nodes(schema: dict[str, Any], path: str = ""):
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key], path + suffix)


def test_names_scope_subresource_and_version() -> None:
    crd = generate_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "modelexperiments.mlrollouts.dev"
    assert spec["group"] == "mlrollouts.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "ModelExperiment" and spec["names"]["singular"] == "modelexperiment"
    assert spec["names"]["shortNames"] == ["mexp"] and spec["names"]["categories"] == ["mlrollouts"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Strategy": ("string", ".spec.strategy"),
        "Phase": ("string", ".status.phase"),
        "Reason": ("string", ".status.reason"),
        "Weight": ("string", ".status.weightSummary"),
        "Decision": ("string", ".status.analysis.decision"),
        "P": ("number", ".status.analysis.pValue"),
        "P(better)": ("number", ".status.analysis.probabilityBetter"),
        "Age": ("date", ".metadata.creationTimestamp"),
    }


@pytest.mark.parametrize("column", PRINTER_COLUMNS, ids=lambda c: c["name"])
def test_every_printer_column_points_at_a_schema_field(column: dict[str, str]) -> None:
    if column["jsonPath"].startswith(".metadata."):
        return
    node = openapi_schema()
    for part in column["jsonPath"].strip(".").split("."):
        node = node["properties"][part]
    expected = {"string": {"string", "object"}, "number": {"number"}}[column["type"]]
    assert node["type"] in expected


def test_openapi_v3_0_forms_no_titles_no_null_defaults() -> None:
    text = yaml.safe_dump(openapi_schema())
    assert "title:" not in text and "anyOf" not in text and "$ref" not in text and "const:" not in text
    for path, node in _nodes(openapi_schema()):
        assert node.get("default", 0) is not None, path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(key, True) is True, f"{path}: OpenAPI 3.0 wants a boolean {key}"
    statistics = openapi_schema()["properties"]["spec"]["properties"]["analysis"]["properties"]["statistics"]
    alpha = statistics["properties"]["alpha"]
    bounds = {key: alpha[key] for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")}
    assert bounds == {"minimum": 0.0, "exclusiveMinimum": True, "maximum": 0.5, "exclusiveMaximum": True}


def test_status_is_all_optional_and_without_defaults() -> None:
    status = openapi_schema()["properties"]["status"]
    for path, node in _nodes(status, ".status"):
        if path != ".status.conditions[]":  # a map list's keys must be required (the API server says so)
            assert "required" not in node, path
        assert "default" not in node, path
        assert "x-kubernetes-validations" not in node, path  # CEL on every status write, for the only writer
    assert status["properties"]["startedAt"]["format"] == "date-time"
    assert status["properties"]["history"]["maxItems"] == 50


def test_conditions_are_a_map_keyed_on_type_with_observed_generation() -> None:
    conditions = openapi_schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["required"] == ["type"]
    assert conditions["items"]["properties"]["observedGeneration"]["type"] == "integer"


def test_an_unbounded_confidence_interval_end_may_be_null() -> None:
    """The operator writes [-0.03, null] for a one-sided interval; a real API server refused the null item
    until the items were marked nullable (the emulator never checked)."""
    evidence = openapi_schema()["properties"]["status"]["properties"]["evidence"]["additionalProperties"]
    items = evidence["properties"]["confidenceInterval"]["items"]
    assert items == {"type": "number", "nullable": True}


def test_spec_keeps_enums_bounds_patterns_required_and_defaults() -> None:
    spec = openapi_schema()["properties"]["spec"]
    props = spec["properties"]
    assert set(spec["required"]) == {"strategy", "champion", "challengers", "traffic", "analysis"}
    assert props["strategy"]["enum"] == ["canary", "abTest", "shadow", "bandit"]
    assert props["challengers"]["minItems"] == 1 and props["challengers"]["maxItems"] == 10
    assert props["champion"]["properties"]["name"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    assert props["canary"]["properties"]["stepDuration"]["default"] == "10m"
    assert props["onMetricsUnavailable"]["default"] == "hold"
    assert props["onMetricsUnavailable"]["enum"] == ["hold", "rollback"]
    assert "default" not in props["canary"], "an absent strategy block must stay absent"


def _rule_targets(rule: str) -> set[str]:
    """Fields a rule reaches through `self.a.b` (iteration variables range over what they came from)."""
    return set(re.findall(r"self((?:\.\w+)+)", rule))


def test_everything_a_cel_rule_traverses_is_bounded() -> None:
    """Real API servers refuse CEL rules whose estimated cost is unbounded: every list, map and string
    under a node a rule reads needs maxItems / maxProperties / maxLength (or an enum)."""
    checked = 0
    for path, node in _nodes(openapi_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            for target in _rule_targets(rule["rule"]):
                sub = node
                for part in target.strip(".").split("."):
                    if part in sub.get("properties", {}):
                        sub = sub["properties"][part]
                for inner_path, inner in _nodes(sub, path + target):
                    checked += 1
                    kind = inner["type"]
                    if kind == "array":
                        assert "maxItems" in inner, f"{inner_path} (rule {rule['rule']!r})"
                    if kind == "object" and "additionalProperties" in inner:
                        assert "maxProperties" in inner, f"{inner_path} (rule {rule['rule']!r})"
                    if kind == "string":
                        assert "maxLength" in inner or "enum" in inner, f"{inner_path} (rule {rule['rule']!r})"
    assert checked > 50


def test_crd_command_prints_and_writes_the_crd(tmp_path, capsys) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == render_crd_yaml()
    target = tmp_path / "crd.yaml"
    assert main(["crd", "--output", str(target)]) == 0
    assert yaml.safe_load(target.read_text()) == generate_crd()
    assert main(["crd", "--output", str(tmp_path / "missing" / "crd.yaml")]) == 2
    assert "--output: directory" in capsys.readouterr().err


def test_rendering_has_no_yaml_aliases() -> None:
    text = render_crd_yaml()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == copy.deepcopy(generate_crd())


def test_an_optional_list_item_is_nullable_so_the_api_server_accepts_an_unbounded_interval() -> None:
    """The real API server prunes a null object field but refuses a null list item unless it is nullable: the
    sequential evidence's interval [null, 0.02] (unbounded below) was a 422 on every status write."""
    evidence = openapi_schema()["properties"]["status"]["properties"]["evidence"]["additionalProperties"]
    assert evidence["properties"]["confidenceInterval"]["items"] == {"type": "number", "nullable": True}
    analysis = openapi_schema()["properties"]["status"]["properties"]["analysis"]["properties"]
    assert "nullable" not in analysis["confidenceInterval"]["items"], "a list of plain floats stays non-null"
    nullable = [path for path, node in _nodes(openapi_schema()) if node.get("nullable")]
    assert nullable == [".status.evidence{}.confidenceInterval[]"], "only list items are made nullable"

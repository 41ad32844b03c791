"""The two guardrail forms: the old bare `query` keeps working as type: threshold; counts are type: ratio;
a manifest mixing them gets one clear problem naming the field and the form to use, from both the operator
and `mlrollouts validate`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from api_support import load_example, python_problems

from mlrollouts.api import parse_experiment
from mlrollouts.cli.main import main

ERRORS = "spec.analysis.guardrails[1]"


def test_a_bare_query_is_a_threshold_guardrail_with_the_old_defaults() -> None:
    old = parse_experiment(load_example("churn-v3.yaml"))
    latency, errors = old.spec.analysis.guardrails
    assert (latency.kind, latency.limit, errors.limit) == ("threshold", 3, 2)
    assert latency.type is None and latency.alpha is None  # nothing is added to a stored manifest


def test_counts_without_type_are_a_ratio_guardrail_with_alpha_001() -> None:
    manifest = load_example("canary-istio.yaml")
    del manifest["spec"]["analysis"]["guardrails"][1]["type"]
    errors = parse_experiment(manifest).spec.analysis.guardrails[1]
    assert (errors.kind, errors.test_alpha, errors.counts_use_window) == ("ratio", 0.01, False)


@pytest.mark.parametrize(
    ("field", "value", "path", "says"),
    [
        (
            "bad",
            'sum(increase(ab_test_errors_total{variant="{{variant}}"}[{{interval}}]))',
            "bad",
            "not per {{interval}}",
        ),
        (
            "total",
            'sum(increase(ab_test_requests_total{variant="{{variant}}"}[{{window}}]))',
            "total",
            "read the same way",
        ),
    ],
)
def test_counts_must_be_totals_read_the_same_way(field: str, value: str, path: str, says: str) -> None:
    manifest = load_example("canary-istio.yaml")
    manifest["spec"]["analysis"]["guardrails"][1][field] = value
    problems = python_problems(manifest)
    assert [p.path for p in problems] == [f"{ERRORS}.{path}"]
    assert says in problems[0].message


def test_validate_names_the_field_and_the_new_form(tmp_path: Path, capsys) -> None:
    mixed = load_example("canary-istio.yaml")
    mixed["spec"]["analysis"]["guardrails"][1]["failureLimit"] = 2
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(mixed))
    assert main(["validate", "-f", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{path}: fraud-v8-canary: {ERRORS}.failureLimit: failureLimit is for type: threshold; a ratio guardrail "
        "rolls back when its sequential test establishes the breach at alpha"
    ]

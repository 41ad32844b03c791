"""`mlrollouts validate`: exit codes, one line per problem naming the field, multi-document files, stdin."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from api_support import EXAMPLES, load_example

from mlrollouts.cli.main import main

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_every_example_is_valid(capsys) -> None:
    args = [arg for path in EXAMPLE_FILES for arg in ("-f", str(path))]
    assert main(["validate", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(EXAMPLE_FILES) >= 7
    assert f"{EXAMPLES / 'churn-v3.yaml'}: churn-v3 valid" in lines


def test_examples_cover_every_strategy_and_provider() -> None:
    specs = [yaml.safe_load(path.read_text())["spec"] for path in EXAMPLE_FILES]
    assert {s["strategy"] for s in specs} == {"canary", "abTest", "shadow", "bandit"}
    from mlrollouts.api.spec import PROVIDERS

    assert (
        {s["traffic"]["provider"] for s in specs}
        == set(PROVIDERS)
        == {"istio", "gatewayAPI", "service", "gateway", "kserve"}
    )
    abn = load_example("abtest-gatewayapi.yaml")["spec"]
    assert len(abn["challengers"]) == 2 and abn["analysis"]["statistics"]["method"] == "fixedHorizon"


def _write(tmp_path: Path, name: str, *documents: object) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return str(path)


def test_problems_are_printed_one_per_line_with_the_field_and_fix(tmp_path, capsys) -> None:
    bad = load_example("churn-v3.yaml")
    bad["spec"]["canary"]["steps"] = [5, 10, 50]
    bad["spec"]["canary"]["stepDuraton"] = "5m"
    path = _write(tmp_path, "bad.yaml", bad)
    assert main(["validate", "-f", path]) == 1
    lines = capsys.readouterr().out.splitlines()
    # The operator's model stops at the unknown field; the CEL layer still judges the steps.
    assert lines == [
        f"{path}: churn-v3: spec.canary.stepDuraton: unknown field; did you mean 'stepDuration'?",
        f"{path}: churn-v3: spec.canary.steps: canary.steps must end at 100",
    ]


def test_two_rules_broken_on_one_field_are_both_reported(tmp_path, capsys) -> None:
    """The operator's validator stops at the first broken rule; the CEL layer adds the second."""
    bad = load_example("churn-v3.yaml")
    bad["spec"]["canary"]["steps"] = [5, 50, 25]
    assert main(["validate", "-f", _write(tmp_path, "bad.yaml", bad)]) == 1
    out = capsys.readouterr().out
    assert "spec.canary.steps: canary.steps must be strictly increasing, got [5, 50, 25]" in out
    assert "spec.canary.steps: canary.steps must end at 100" in out
    assert len(out.splitlines()) == 2


def test_multi_document_file_reports_each_experiment_and_skips_other_kinds(tmp_path, capsys) -> None:
    good = load_example("canary-istio.yaml")
    bad = load_example("bandit-gateway.yaml")
    bad["spec"]["bandit"]["minExploration"] = 0.9
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "churn"}}
    path = _write(tmp_path, "all.yaml", good, service, bad)
    assert main(["validate", "-f", path]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: fraud-v8-canary valid"
    assert lines[1].startswith(f"{path}: headline-bandit: spec.bandit.minExploration: ")
    assert "0.5" in lines[1] and len(lines) == 3
    # 0.9 also breaks the floor × arms rule (3 arms), which the CRD layer reports on the same field
    assert lines[2].endswith(
        "spec.bandit.minExploration: " + "bandit.minExploration times the number of arms "
        "(champion + challengers) must be at most 1"
    )


def test_stdin(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO((EXAMPLES / "shadow-istio.yaml").read_text()))
    assert main(["validate", "-f", "-"]) == 0
    assert capsys.readouterr().out == "-: churn-v4-shadow valid\n"


def test_wrong_api_version_is_a_problem(tmp_path, capsys) -> None:
    manifest = load_example("churn-v3.yaml") | {"apiVersion": "mlrollouts.dev/v1"}
    assert main(["validate", "-f", _write(tmp_path, "v1.yaml", manifest)]) == 1
    assert "churn-v3: apiVersion: must be mlrollouts.dev/v1alpha1, got 'mlrollouts.dev/v1'" in capsys.readouterr().out


def test_file_without_any_experiment_fails(tmp_path, capsys) -> None:
    path = _write(tmp_path, "svc.yaml", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}})
    assert main(["validate", "-f", path]) == 1
    assert (
        capsys.readouterr().out
        == f"{path}: file: kind: no ModelExperiment, MetricTemplate or ClusterMetricTemplate document found\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("spec: [unclosed\n", "YAML syntax error at line 2"),
    ],
)
def test_unreadable_input_is_a_usage_error(tmp_path, capsys, content: str | None, expected: str) -> None:
    path = tmp_path / "input.yaml"
    if content is not None:
        path.write_text(content)
    assert main(["validate", "-f", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"mlrollouts: error: -f: {path}: {expected}")


def test_filename_is_required(capsys) -> None:
    assert main(["validate"]) == 2
    assert capsys.readouterr().err.startswith("mlrollouts: error: -f: give at least one manifest file")

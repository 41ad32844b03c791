"""`mlrollouts validate` with metric templates: references resolved from the -f files, the templates themselves
checked against their generated CRD, and each failure one line naming the reference and the fix."""

from __future__ import annotations

from pathlib import Path

import yaml
from api_support import ROOT

from mlrollouts.cli.main import main

TEMPLATED = ROOT / "examples" / "templates" / "canary-istio-templates.yaml"
LOCAL_TEMPLATE = ROOT / "examples" / "templates" / "latency-metrictemplate.yaml"
BUILTIN = ROOT / "charts" / "mlrollouts" / "files" / "metric-templates.yaml"


def builtin_file(tmp_path: Path) -> str:
    """The chart's built-in templates as the objects it renders (templates/metric-templates.yaml)."""
    specs = yaml.safe_load(BUILTIN.read_text())
    documents = [
        {"apiVersion": "mlrollouts.dev/v1alpha1", "kind": "ClusterMetricTemplate", "metadata": {"name": n}, "spec": s}
        for n, s in specs.items()
    ]
    path = tmp_path / "builtin.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def test_the_templated_example_is_valid_with_its_templates(tmp_path: Path, capsys) -> None:
    assert main(["validate", "-f", str(TEMPLATED), "-f", str(LOCAL_TEMPLATE), "-f", builtin_file(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{TEMPLATED}: churn-v3-templated valid" in out
    assert f"{LOCAL_TEMPLATE}: MetricTemplate model-latency-quantile valid" in out


def test_without_the_templates_each_reference_is_named(capsys) -> None:
    assert main(["validate", "-f", str(TEMPLATED)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert (
        f"{TEMPLATED}: churn-v3-templated: spec.analysis.guardrails[2].templateRef: metric template not found: "
        "no MetricTemplate ml/model-latency-quantile or ClusterMetricTemplate model-latency-quantile; "
        "create it or fix the name"
    ) in lines
    assert len(lines) == 4  # the primary metric and the three guardrails


def test_a_namespaced_template_serves_only_its_own_namespace(tmp_path: Path, capsys) -> None:
    other = yaml.safe_load(LOCAL_TEMPLATE.read_text())
    other["metadata"]["namespace"] = "team-b"
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    assert main(["validate", "-f", str(TEMPLATED), "-f", str(path), "-f", builtin_file(tmp_path)]) == 1
    assert "no MetricTemplate ml/model-latency-quantile" in capsys.readouterr().out


def test_a_broken_template_is_named_with_its_field(tmp_path: Path, capsys) -> None:
    template = yaml.safe_load(LOCAL_TEMPLATE.read_text())
    template["spec"]["args"][0]["name"] = "q"  # the query still says {{args.quantile}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(template))
    assert main(["validate", "-f", str(path)]) == 1
    out = capsys.readouterr().out
    assert "spec.query: uses undeclared argument {{args.quantile}}; declare it in args (declared: q)" in out
    template["spec"]["querry"] = "up"
    path.write_text(yaml.safe_dump(template))
    assert main(["validate", "-f", str(path)]) == 1
    assert "MetricTemplate model-latency-quantile: spec.querry: unknown field; did you mean 'query'?" in (
        capsys.readouterr().out
    )

"""The chart's built-in ClusterMetricTemplates: valid against the generated CRD, PromQL that promtool parses,
and usable from an experiment (primary metric or guardrail) as `mlrollouts validate` resolves them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_support import of_kind, render

from mlrollouts.api.template_crd import generate_template_crd
from mlrollouts.api.templates import parse_template
from mlrollouts.cli.api_commands import check_manifest
from mlrollouts.cli.template_sources import file_finder, parse_templates
from mlrollouts.metrics.template_refs import ARG_REFERENCE
from mlrollouts.metrics.templates import render as render_query

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SAMPLE = {"variant": "churn-v3", "service": "churn-v3", "namespace": "ml", "experiment": "e", "interval": "1m"}


def builtin() -> list[dict[str, Any]]:
    return of_kind(render({}), "ClusterMetricTemplate")


def test_builtin_templates_cover_istio_contour_and_the_gateway_and_can_be_turned_off() -> None:
    names = {t["metadata"]["name"] for t in builtin()}
    assert names == {
        *(f"{family}-{what}" for family in ("istio", "contour") for what in ("success-rate", "error-ratio")),
        *(f"{family}-slow-requests" for family in ("istio", "contour", "gateway")),
        "istio-latency-quantile",
        "gateway-outcome-rate",
        "gateway-error-ratio",
    }
    assert of_kind(render({"metricTemplates": {"builtin": False}}), "ClusterMetricTemplate") == []


def test_builtin_templates_match_the_generated_crd_schema_and_the_models() -> None:
    schema = generate_template_crd("ClusterMetricTemplate")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for template in builtin():
        errors = [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(template)]
        assert errors == [], (template["metadata"]["name"], errors)
        parse_template(template)


@pytest.mark.integration  # runs promtool
def test_every_builtin_query_parses_with_promtool(tmp_path: Path) -> None:
    rules = []
    for template in builtin():
        spec = parse_template(template).spec
        defaults = {arg.name: arg.default for arg in spec.args}
        for field, text in spec.queries.items():
            query = ARG_REFERENCE.sub(lambda m, values=defaults: values[m.group(1)] or "", text)
            expr = render_query(query, {**SAMPLE, "window": "5m"}, field)
            rules.append({"record": f"check:{template['metadata']['name'].replace('-', '_')}:{field}", "expr": expr})
    path = tmp_path / "templates.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "templates", "rules": rules}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_check_catches_a_broken_template_query(tmp_path: Path) -> None:
    path = tmp_path / "broken.rules.yaml"
    broken = {"record": "check:x", "expr": 'sum(istio_requests_total{reporter="destination"}'}
    path.write_text(yaml.safe_dump({"groups": [{"name": "t", "rules": [broken]}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode != 0


def _experiment(primary: str, guardrails: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "mlrollouts.dev/v1alpha1",
        "kind": "ModelExperiment",
        "metadata": {"name": "exp", "namespace": "ml"},
        "spec": {
            "strategy": "canary",
            "champion": {"name": "churn-v2", "service": "churn-v2"},
            "challengers": [{"name": "churn-v3", "service": "churn-v3"}],
            "traffic": {"provider": "istio", "istio": {"virtualService": "churn"}},
            "canary": {"steps": [20, 100], "stepDuration": "5m"},
            "analysis": {
                "primaryMetric": {"name": "m", "templateRef": {"name": primary, "kind": "ClusterMetricTemplate"}},
                "guardrails": [
                    {"name": f"g{i}", "templateRef": {"name": g}, "max": 0.5} for i, g in enumerate(guardrails)
                ],
            },
        },
    }


@pytest.mark.parametrize("family", ["istio", "contour", "gateway"])
def test_each_family_resolves_as_primary_metric_and_guardrails(family: str) -> None:
    templates, problems = parse_templates(builtin())
    assert problems == []
    primary = "gateway-outcome-rate" if family == "gateway" else f"{family}-success-rate"
    manifest = _experiment(primary, [f"{family}-error-ratio", f"{family}-slow-requests"])
    assert check_manifest(manifest, file_finder(templates)) == []

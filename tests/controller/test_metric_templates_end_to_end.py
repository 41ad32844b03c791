"""Acceptance (issue 13 item 3): a canary written only with templateRefs to the chart's built-in Istio
ClusterMetricTemplates validates (offline with -f, online with --kubeconfig) and runs on the local stack:
the real operator process, the emulated API server, real Prometheus scraping Istio-named series.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from helm_python.chart import Chart
from stack import GROUP, VERSION, Stack, virtual_service_manifest

from mlrollouts.cli.api_commands import check_manifest
from mlrollouts.cli.template_sources import file_finder, parse_templates

pytestmark = pytest.mark.integration
CHART = Path(__file__).resolve().parents[2] / "charts" / "mlrollouts"
PLURAL = "clustermetrictemplates"


def chart_templates() -> list[dict[str, Any]]:
    """The ClusterMetricTemplates the chart renders with its default values."""
    files = Chart.load(CHART).render({}, name="rel", namespace="mlrollouts-system")
    texts = [text for path, text in files.items() if path.endswith("metric-templates.yaml")]
    documents = [d for text in texts for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    return [d for d in documents if d.get("kind") == "ClusterMetricTemplate"]


def templated_canary(name: str, prometheus: str, **primary: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelExperiment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "strategy": "canary",
            "champion": {"name": "churn-v2", "service": "churn-v2"},
            "challengers": [{"name": "churn-v3", "service": "churn-v3"}],
            "traffic": {"provider": "istio", "istio": {"virtualService": "churn", "routes": ["predict"]}},
            "canary": {"steps": [20, 50, 100], "stepDuration": "2s", "minSamplesPerStep": 30},
            "analysis": {
                "interval": "1s",
                "prometheus": {"address": prometheus, "timeout": "2s"},
                "primaryMetric": {
                    "name": "success-rate",
                    "templateRef": {"name": "istio-success-rate", "kind": "ClusterMetricTemplate"},
                    "minimumDetectableEffect": 0.1,
                    **primary,
                },
                "guardrails": [
                    {"name": "errors", "templateRef": {"name": "istio-error-ratio"}, "max": 0.2},
                    {
                        "name": "slow",
                        "templateRef": {"name": "istio-slow-requests", "args": {"thresholdMs": "250"}},
                        "max": 0.3,
                    },
                ],
            },
            "metricsFailureLimit": 3,
        },
    }


@pytest.fixture
def templates(stack: Stack) -> Any:
    created = []
    for template in chart_templates():
        body = {k: template[k] for k in ("apiVersion", "kind", "metadata", "spec")}
        stack.objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        created.append(template["metadata"]["name"])
    stack.objects.create_namespaced_custom_object(
        "networking.istio.io", "v1", "default", "virtualservices", virtual_service_manifest("churn", "churn-v2", "")
    )
    yield created
    for name in ("templated", "no-template"):
        with contextlib.suppress(kubernetes.client.ApiException):
            stack.objects.delete_namespaced_custom_object(GROUP, VERSION, "default", "modelexperiments", name)
    time.sleep(1)
    with contextlib.suppress(kubernetes.client.ApiException):
        stack.objects.delete_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", "churn"
        )
    for name in created:
        with contextlib.suppress(kubernetes.client.ApiException):
            stack.objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def _weights(stack: Stack) -> dict[str, int]:
    route = next(r for r in stack.virtual_service("churn")["spec"]["http"] if r.get("name") == "predict")
    return {d["destination"]["host"]: d.get("weight", 0) for d in route["route"]}


def _validate(tmp: Path, manifest: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp / "experiment.yaml"
    path.write_text(yaml.safe_dump(manifest))
    env = {**os.environ, "MLROLLOUTS_MIN_INTERVAL": "1s"}
    command = [sys.executable, "-m", "mlrollouts.cli.main", "validate", "-f", str(path), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_canary_from_chart_istio_templates_validates_and_is_promoted(
    stack: Stack, templates: list[str], tmp_path: Path
) -> None:
    manifest = templated_canary("templated", stack.prometheus.address)
    in_files, problems = parse_templates(chart_templates())
    assert problems == [] and len(in_files) == len(templates)
    assert check_manifest(manifest, file_finder(in_files)) == []  # offline, templates from the chart's files
    offline_alone = _validate(tmp_path, manifest)
    assert offline_alone.returncode == 1 and "ClusterMetricTemplate istio-success-rate" in offline_alone.stdout
    online = _validate(tmp_path, manifest, "--kubeconfig", str(stack.apiserver.kubeconfig))
    assert online.returncode == 0, online.stdout + online.stderr

    stack.exporter.control("churn-v2", error_rate=0.10)
    stack.exporter.control("churn-v3", error_rate=0.01)
    stack.create(manifest)
    stack.follow_traffic("templated", total_rate=300.0)
    status = stack.wait_for("templated", lambda s: s.get("phase") == "Promoted", 120, "phase Promoted")
    assert _weights(stack) == {"churn-v2": 0, "churn-v3": 100}
    # The samples came from istio_requests_total through the template: trials count every request.
    assert status["samples"]["churn-v3"]["trials"] > 0
    assert {g["name"] for g in status["guardrails"]} == {"errors", "slow"}


def test_missing_template_makes_the_experiment_invalid_naming_it_and_moves_no_traffic(
    stack: Stack, templates: list[str]
) -> None:
    manifest = templated_canary("no-template", stack.prometheus.address)
    manifest["spec"]["analysis"]["guardrails"][0]["templateRef"]["name"] = "istio-eror-ratio"
    stack.create(manifest)
    status = stack.wait_for("no-template", lambda s: s.get("phase") == "Invalid", 30, "phase Invalid")
    assert "guardrails[0].templateRef" in status["message"]
    assert "ClusterMetricTemplate istio-eror-ratio" in status["message"]
    assert _weights(stack) == {"churn-v2": 100}, "no traffic moved for a missing template"
    # Creating the template it names is picked up at the next check, without touching the experiment.
    fixed = next(t for t in chart_templates() if t["metadata"]["name"] == "istio-error-ratio")
    fixed["metadata"] = {"name": "istio-eror-ratio"}
    stack.objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, fixed)
    try:
        stack.wait_for("no-template", lambda s: s.get("phase") == "Progressing", 60, "Progressing once it exists")
    finally:
        stack.objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "istio-eror-ratio")


def test_an_edited_template_applies_at_the_next_tick(stack: Stack, templates: list[str]) -> None:
    """A namespaced MetricTemplate behind a guardrail is edited mid-step: the next tick reads the new query,
    which breaks the bound, and the canary rolls back without the experiment being touched."""
    workload = 'istio_requests_total{destination_workload="{{variant}}"}'
    template = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MetricTemplate",
        "metadata": {"name": "health", "namespace": "default"},
        "spec": {"query": f"sum({workload}) * 0"},
    }
    stack.objects.create_namespaced_custom_object(GROUP, VERSION, "default", "metrictemplates", template)
    manifest = templated_canary("edited", stack.prometheus.address)
    manifest["spec"]["canary"]["stepDuration"] = "10m"  # the first step lasts the whole test
    manifest["spec"]["analysis"]["guardrails"] = [{"name": "health", "templateRef": {"name": "health"}, "max": 0.5}]
    try:
        stack.create(manifest)
        stack.follow_traffic("edited", total_rate=200.0)
        stack.wait_for("edited", lambda s: (s.get("weights") or {}).get("churn-v3") == 20, 60, "first step at 20 %")
        stack.objects.patch_namespaced_custom_object(
            GROUP, VERSION, "default", "metrictemplates", "health", {"spec": {"query": f"sum({workload}) * 0 + 1"}}
        )
        status = stack.wait_for("edited", lambda s: s.get("phase") == "RolledBack", 30, "phase RolledBack")
        assert "health" in status["analysis"]["reason"]
        # The edit restarted the analysis first (samples from two queries are not one sample), then the
        # guardrail read the new query and rolled back.
        assert any("metric template queries changed" in h.get("reason", "") for h in status["history"])
        assert _weights(stack) == {"churn-v2": 100, "churn-v3": 0}
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            stack.objects.delete_namespaced_custom_object(GROUP, VERSION, "default", "modelexperiments", "edited")
        time.sleep(1)
        stack.objects.delete_namespaced_custom_object(GROUP, VERSION, "default", "metrictemplates", "health")

"""The metric template CRDs on the real kube-apiserver: accepted by its CEL checker and cost estimator, the
chart's built-in templates and the templated example applied with server-side validation, a broken template
or an unsafe argument value refused at its field, and `mlrollouts validate --kubeconfig` reading them."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml
from realcluster_support import REAL_CLUSTER_MARKS, real_cluster

from mlrollouts.localstack.kubectl import Kubectl
from mlrollouts.localstack.realcluster import RealApiServer

REPO = pathlib.Path(__file__).resolve().parents[2]
TEMPLATED = REPO / "examples" / "templates" / "canary-istio-templates.yaml"
LOCAL_TEMPLATE = REPO / "examples" / "templates" / "latency-metrictemplate.yaml"
BUILTIN = REPO / "charts" / "mlrollouts" / "files" / "metric-templates.yaml"

pytestmark = REAL_CLUSTER_MARKS


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RealApiServer, Kubectl]]:
    with real_cluster(tmp_path_factory.mktemp("real-apiserver-templates")) as (server, kubectl):
        assert kubectl.run("create", "namespace", "ml").returncode == 0
        yield server, kubectl


def builtin_documents() -> str:
    specs = yaml.safe_load(BUILTIN.read_text())
    return yaml.safe_dump_all(
        {"apiVersion": "mlrollouts.dev/v1alpha1", "kind": "ClusterMetricTemplate", "metadata": {"name": n}, "spec": s}
        for n, s in specs.items()
    )


def test_template_crds_pass_the_real_cel_checker_and_are_established(cluster: tuple[RealApiServer, Kubectl]) -> None:
    server, kubectl = cluster
    assert server.rejected_crds == []
    for name, scope in (("metrictemplates", "Namespaced"), ("clustermetrictemplates", "Cluster")):
        served = kubectl.run("get", "crd", f"{name}.mlrollouts.dev", "-o", "jsonpath={.spec.scope}")
        assert served.returncode == 0, served.stderr
        assert served.stdout == scope


def test_builtin_templates_and_the_templated_example_apply_and_validate_online(
    cluster: tuple[RealApiServer, Kubectl],
) -> None:
    server, kubectl = cluster
    applied = kubectl.run("apply", "-f", "-", input=builtin_documents())
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("created") + applied.stdout.count("configured") == len(
        yaml.safe_load(BUILTIN.read_text())
    )
    for path in (LOCAL_TEMPLATE, TEMPLATED):
        result = kubectl.run("apply", "-f", str(path))
        assert result.returncode == 0, result.stderr
    command = [sys.executable, "-m", "mlrollouts.cli.main", "validate", "-f", str(TEMPLATED)]
    online = subprocess.run(
        [*command, "--kubeconfig", str(server.kubeconfig)], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert online.returncode == 0, online.stdout + online.stderr
    assert "churn-v3-templated valid" in online.stdout


def test_a_template_with_bad_but_no_total_is_refused_by_cel(cluster: tuple[RealApiServer, Kubectl]) -> None:
    _, kubectl = cluster
    template = yaml.safe_load(LOCAL_TEMPLATE.read_text())
    template["metadata"]["name"] = "half-ratio"
    template["spec"]["bad"] = 'sum(errors_total{variant="{{variant}}"})'
    result = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(template))
    assert result.returncode != 0
    assert "spec.bad" in result.stderr and "bad and total go together" in result.stderr, result.stderr


def test_an_argument_value_that_could_inject_promql_is_refused_by_the_schema(
    cluster: tuple[RealApiServer, Kubectl],
) -> None:
    _, kubectl = cluster
    experiment = yaml.safe_load(TEMPLATED.read_text())
    experiment["metadata"]["name"] = "injected"
    experiment["spec"]["analysis"]["guardrails"][2]["templateRef"]["args"]["quantile"] = '0.9"} or vector(1) #'
    result = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(experiment))
    assert result.returncode != 0
    assert "spec.analysis.guardrails[2].templateRef.args.quantile" in result.stderr, result.stderr

"""examples/quickstart/ as the README's "Your first experiment" applies it, on the real kube-apiserver.

kubectl applies the files in order with its default (server-side, strict) validation: the Namespace, the model
Deployments and Services, the routing object (validated by the real Istio / Gateway API CRDs), the ServiceMonitor
(the real Prometheus Operator CRD) and the ModelExperiment (our CRD with its CEL rules). Pods do not run there,
so the operator's part is checked instead: it reads the experiment, its queries of Istio's standard metrics
return one series each from a real Prometheus, and it moves the first step's traffic on the routing object.
Skipped, with the reason, where `make controlplane` has not built the control plane.
"""

from __future__ import annotations

import http.server
import os
import pathlib
import shutil
import sys
import threading
import time
from collections.abc import Iterator

import kubernetes
import pytest
import yaml

from controller.stack import OperatorProcess
from mlrollouts.localstack import binaries
from mlrollouts.localstack.kubectl import Kubectl
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.realcluster import RealApiServer
from mlrollouts.localstack.replicas import start_on_free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
NAMESPACE = "quickstart"
# What Istio's sidecars and the models would expose, in their names and labels.
ISTIO = 'reporter="destination",destination_workload_namespace="quickstart",destination_workload="{0}"'


def _series(workload: str, version: str) -> list[str]:
    istio = ISTIO.format(workload)
    return [
        f'istio_requests_total{{{istio},destination_version="{version}",response_code="200"}} 990',
        f'istio_requests_total{{{istio},destination_version="{version}",response_code="503"}} 3',
        f'istio_request_duration_milliseconds_bucket{{{istio},le="500"}} 980',
        f'istio_request_duration_milliseconds_bucket{{{istio},le="+Inf"}} 993',
        f"istio_request_duration_milliseconds_count{{{istio}}} 993",
        f'model_outcomes_total{{namespace="quickstart",variant="{workload}",outcome="success"}} 700',
        f'model_outcomes_total{{namespace="quickstart",variant="{workload}",outcome="failure"}} 290',
    ]


METRICS = "\n".join(_series("churn-v2", "v2") + _series("churn-v3", "v3"))

VARIANTS = {
    "istio": sorted(QUICKSTART.glob("*.yaml")),
    "gateway-api": sorted(
        [p for p in QUICKSTART.glob("*.yaml") if p.name not in ("20-virtualservice.yaml", "50-experiment.yaml")]
        + list((QUICKSTART / "gateway-api").glob("*.yaml")),
        key=lambda p: p.name,
    ),
}


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (METRICS + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_prometheus() -> Iterator[PrometheusServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with PrometheusServer([f"127.0.0.1:{server.server_address[1]}"]) as prometheus:
            yield prometheus
    finally:
        server.shutdown()


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[tuple[RealApiServer, Kubectl]]:
    with RealApiServer(kubeconfig_path=tmp_path / "kubeconfig") as server:
        assert server.kubeconfig is not None
        yield server, Kubectl(server.kubeconfig, tmp_path / "kubectl-cache")


class _QuickstartOperator(OperatorProcess):
    """`mlrollouts run` watching the quickstart namespace."""

    def start(self) -> _QuickstartOperator:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        command = [sys.executable, "-m", "mlrollouts.cli.main", "run", "--standalone", "--namespace", NAMESPACE]
        command += ["--liveness-port", "0"]
        self.process, self.metrics_port = start_on_free_port(
            lambda port: [*command, "--metrics-port", str(port)], env, self.log_path
        )
        return self


def test_the_files_are_numbered_in_the_order_they_must_be_applied() -> None:
    kinds = [yaml.safe_load_all(p.read_text()) for p in VARIANTS["istio"]]
    order = [next(iter(docs))["kind"] for docs in kinds]
    assert order == ["Namespace", "Deployment", "VirtualService", "ServiceMonitor", "ModelExperiment"]
    assert [p.name for p in VARIANTS["gateway-api"]][2:] == [
        "20-httproute.yaml",
        "30-servicemonitor.yaml",
        "50-experiment.yaml",
    ]


def test_the_readme_shows_the_experiment_as_the_file_has_it() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Your first experiment") :]
    section = section[: section.index("\n## ")]
    experiment = (QUICKSTART / "50-experiment.yaml").read_text()
    shown = "\n".join(line for line in experiment.splitlines() if not line.startswith("#"))
    assert f"```yaml\n{shown}\n```" in section
    for path in VARIANTS["istio"]:
        assert f"kubectl apply -f examples/quickstart/{path.name}" in section, path.name


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.integration
@pytest.mark.skipif(not binaries.available(), reason=binaries.unavailable_reason())
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_quickstart_applies_with_default_validation_and_the_operator_moves_the_first_step(
    variant: str,
    cluster: tuple[RealApiServer, Kubectl],
    metrics_prometheus: PrometheusServer,
    tmp_path: pathlib.Path,
) -> None:
    server, kubectl = cluster
    for path in VARIANTS[variant]:  # one file at a time, in order, as the README does
        result = kubectl.run("apply", "-f", str(path))
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
        assert "Warning" not in result.stderr, f"{path.name}: {result.stderr}"
    listed = kubectl.run("get", "deploy,svc,servicemonitor,mexp", "-n", NAMESPACE, "-o", "name").stdout.split()
    assert {
        "deployment.apps/churn-v2",
        "deployment.apps/churn-v3",
        "service/churn",
        "modelexperiment.mlrollouts.dev/churn-v3",
    } <= set(listed)
    assert "servicemonitor.monitoring.coreos.com/churn-models" in listed

    api = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
    objects = kubernetes.client.CustomObjectsApi(api)
    # The only changes: the in-cluster Prometheus address becomes the local one holding Istio-shaped series, and
    # the 1-minute interval 2 s, so the check after the start comes within the test.
    patch = {"spec": {"analysis": {"interval": "2s", "prometheus": {"address": metrics_prometheus.address}}}}
    objects.patch_namespaced_custom_object(
        "mlrollouts.dev", "v1alpha1", NAMESPACE, "modelexperiments", "churn-v3", patch
    )
    operator = _QuickstartOperator(server.kubeconfig, tmp_path / "operator.log").start()
    try:
        status = _wait_for_first_step(objects, operator)
    finally:
        operator.stop()
        api.close()
    assert status["phase"] == "Progressing" and status["weights"] == {"churn-v2": 95, "churn-v3": 5}, status
    # Each query of Istio's metrics answered, and the counters hold what those series say (993 requests, 3 of
    # them 5xx, 13 slower than 500 ms); the business metric's too.
    counted = status["guardrailCounts"]["counters"]["churn-v3"]
    baselines = {name: state["baseline"] for name, state in counted.items()}
    assert baselines == {
        "error-rate.bad": 3,
        "error-rate.total": 993,
        "slow-requests.bad": 13,
        "slow-requests.total": 993,
    }
    assert {n: s["baseline"] for n, s in status["counters"]["churn-v2"].items()} == {"successes": 700, "trials": 990}
    available = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")
    assert available["status"] == "True", available
    assert _route_weights(objects, variant) == {"churn-v2": 95, "churn-v3": 5}


def _wait_for_first_step(objects: kubernetes.client.CustomObjectsApi, operator: OperatorProcess) -> dict:
    deadline = time.monotonic() + 60
    status: dict = {}
    while time.monotonic() < deadline:
        status = (
            objects.get_namespaced_custom_object(
                "mlrollouts.dev", "v1alpha1", NAMESPACE, "modelexperiments", "churn-v3"
            ).get("status")
            or {}
        )
        if status.get("guardrails") and status.get("counters"):  # the first check after the start
            return status
        time.sleep(0.3)
    raise AssertionError(f"no check after the start within 60 s; status {status}\n{operator.log()[-3000:]}")


def _route_weights(objects: kubernetes.client.CustomObjectsApi, variant: str) -> dict[str, int]:
    if variant == "istio":
        vs = objects.get_namespaced_custom_object("networking.istio.io", "v1", NAMESPACE, "virtualservices", "churn")
        route = next(r for r in vs["spec"]["http"] if r["name"] == "predict")
        return {d["destination"]["host"]: d["weight"] for d in route["route"]}
    route = objects.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", "churn")
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}

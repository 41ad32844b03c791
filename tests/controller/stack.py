"""The end-to-end stack for controller tests: an API server (real or emulated), real Prometheus, a steerable metrics
exporter, the operator as a real `mlrollouts run` process, and a traffic follower that makes each variant's
request rate follow status.weights, as a mesh would.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import kubernetes

from mlrollouts.localstack.exporter import ExporterProcess
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.replicas import start_on_free_port
from mlrollouts.localstack.testbackend import SuiteApiServer

GROUP, VERSION, PLURAL = "mlrollouts.dev", "v1alpha1", "modelexperiments"
SCHEMAS = pathlib.Path(__file__).parents[1] / "data" / "schemas"


class OperatorProcess:
    """`mlrollouts run --standalone` as a child process, so a test can kill it and start it again."""

    def __init__(self, kubeconfig: pathlib.Path, log_path: pathlib.Path) -> None:
        self.kubeconfig, self.log_path = kubeconfig, log_path
        self.watch_timeout = 30  # seconds a watch request lasts before kopf renews it (MLROLLOUTS_WATCH_TIMEOUT)
        self.metrics_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        """Returns once the operator serves its metrics port itself (start_on_free_port: a port taken between the
        pick and the operator's bind costs a restart on another, never a test)."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "MLROLLOUTS_WATCH_TIMEOUT": str(self.watch_timeout)}
        command = [
            sys.executable,
            "-m",
            "mlrollouts.cli.main",
            "run",
            "--standalone",
            "--namespace",
            "default",
            "--liveness-port",
            "0",
        ]
        self.process, self.metrics_port = start_on_free_port(
            lambda port: [*command, "--metrics-port", str(port)], env, self.log_path
        )
        return self

    def wait_serving(self, timeout: float = 120.0) -> OperatorProcess:
        """Until the operator answers on its metrics port: on a loaded machine its start-up (imports, kopf)
        takes seconds that a test's wait for the first status should not have to include."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise AssertionError(f"the operator exited during start-up:\n{self.log()[-3000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"the operator did not serve within {timeout:.0f} s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crashed pod."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class TrafficFollower(threading.Thread):
    """Sets each variant's request rate to total_rate × weight / 100 from the experiment's status."""

    def __init__(self, read_weights: Callable[[], dict[str, int]], exporter: ExporterProcess, total_rate: float):
        super().__init__(daemon=True)
        self.read_weights, self.exporter, self.total_rate = read_weights, exporter, total_rate
        self.stopping = threading.Event()
        self.applied: dict[str, int] = {}

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            try:
                weights = self.read_weights()
            except Exception:  # the experiment may be gone; keep the last rates
                continue
            if weights and weights != self.applied:
                for variant in self.exporter.variants:
                    self.exporter.control(variant, rate=self.total_rate * weights.get(variant, 0) / 100)
                self.applied = dict(weights)


MIN_WAIT_S = 60.0


class Stack:
    def __init__(self, apiserver: SuiteApiServer, tmp: pathlib.Path, variants: list[str]) -> None:
        self.apiserver, self.tmp = apiserver, tmp
        self.api = kubernetes.config.new_client_from_config(config_file=str(apiserver.kubeconfig))
        self.objects = kubernetes.client.CustomObjectsApi(self.api)
        self.exporter = ExporterProcess(variants, seed=7, tick=0.1).start()
        for variant in variants:
            self.exporter.control(variant, rate=0)
        self.prometheus = PrometheusServer([self.exporter.target]).start()
        self.operator = OperatorProcess(apiserver.kubeconfig, tmp / "operator.log")
        self.follower: TrafficFollower | None = None

    def close(self) -> None:
        if self.follower:
            self.follower.stopping.set()
        self.operator.stop()
        self.prometheus.stop()
        self.exporter.stop()
        self.api.close()

    # --- objects -------------------------------------------------------------------------------------
    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, manifest)

    def get(self, name: str) -> dict[str, Any]:
        return self.objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def follow_traffic(self, name: str, total_rate: float = 200.0) -> None:
        self.follower = TrafficFollower(lambda: self.status(name).get("weights") or {}, self.exporter, total_rate)
        self.follower.start()

    def wait_for(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """Poll the status until `predicate` holds. `timeout` is a failure budget, never a speed claim, and at
        least MIN_WAIT_S: on a loaded 2-core CI machine an operator tick can take seconds (make bench times it)."""
        timeout = max(timeout, MIN_WAIT_S)
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status = self.status(name)
            except kubernetes.client.ApiException:
                status = {}
            if predicate(status):
                return status
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; status: {status}\n--- operator log tail ---\n"
            + "\n".join(self.operator.log().splitlines()[-40:])
        )

    def install_istio(self) -> None:
        self.apiserver.install_crd_files([SCHEMAS / "istio-networking.crd.yaml"])

    def virtual_service(self, name: str) -> dict[str, Any]:
        return self.objects.get_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", name
        )


def virtual_service_manifest(name: str, champion: str, challenger: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hosts": [name],
            "http": [
                {"name": "predict", "route": [{"destination": {"host": champion}, "weight": 100}]},
                {
                    "name": "admin",
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": champion}}],
                },
            ],
        },
    }


def canary_manifest(name: str, prometheus: str, *, steps: list[int] | None = None, **overrides: Any) -> dict:
    spec: dict[str, Any] = {
        "strategy": "canary",
        "champion": {"name": "churn-v2", "service": "churn-v2"},
        "challengers": [{"name": "churn-v3", "service": "churn-v3"}],
        "traffic": {"provider": "istio", "istio": {"virtualService": "churn", "routes": ["predict"]}},
        "canary": {"steps": steps or [20, 50, 100], "stepDuration": "2s", "minSamplesPerStep": 30},
        "analysis": {
            "interval": "1s",
            "prometheus": {"address": prometheus, "timeout": "2s"},
            "primaryMetric": {
                "name": "retention",
                "type": "proportion",
                "successes": 'sum(model_outcomes_total{variant="{{variant}}",outcome="success"})',
                "trials": 'sum(model_outcomes_total{variant="{{variant}}"})',
                "direction": "increase",
                "minimumDetectableEffect": 0.1,
            },
            "guardrails": [
                {
                    "name": "p95-latency",
                    "query": "histogram_quantile(0.95, sum by (le) "
                    '(rate(ab_test_latency_seconds_bucket{variant="{{variant}}"}[5s])))',
                    "max": 0.5,
                    "failureLimit": 2,
                }
            ],
            "statistics": {"method": "sequential", "alpha": 0.05},
        },
        "metricsFailureLimit": 3,
    }
    spec.update(overrides)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelExperiment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }

"""Run one demo scenario end to end: the local stack, real processes, the experiment, the report.

Order: API server (the real etcd + kube-apiserver when `make controlplane` built them, else the emulator in
this process; see demo/backend.py) -> model servers -> gateway (follows the experiment's status; on the real
backend as its own ServiceAccount, allowed to read that one experiment) -> operator -> Prometheus scraping
the gateway and the operator -> the manifest, applied with kubectl when it is on PATH -> simulated users.
Every child is stopped in `finally`, also on Ctrl-C or SIGTERM, and the run is bounded by `timeout`.
"""

from __future__ import annotations

import logging
import pathlib
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import kubernetes

from mlrollouts import GROUP, PLURAL, VERSION
from mlrollouts.api import TERMINAL_PHASES
from mlrollouts.demo import report
from mlrollouts.demo.backend import ApiServer, gateway_kubeconfig_for, start_apiserver
from mlrollouts.demo.processes import Child, DemoError, Supervisor, mlrollouts_cli, python_module
from mlrollouts.demo.scenarios import Scenario, load_manifest_text
from mlrollouts.demo.traffic import read_stats
from mlrollouts.localstack.kubectl import NO_VALIDATION, Kubectl
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.realcluster import RealApiServer

log = logging.getLogger(__name__)
NAMESPACE = "default"
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class DemoOptions:
    scenario: Scenario
    run_dir: pathlib.Path
    timeout: float = 300.0
    fast: bool = False
    rate: float = 150.0
    seed: int | None = 7
    backend: str = "emulated"
    """real: etcd + kube-apiserver built by `make controlplane` (demo.backend.choose_backend); emulated otherwise."""


@dataclass
class Snapshot:
    """What the progress display shows at one moment."""

    experiment: dict[str, Any] | None
    elapsed: float
    traffic: dict[str, Any] = field(default_factory=dict)
    watch_hint: str = ""


@dataclass(frozen=True)
class DemoResult:
    experiment: dict[str, Any]
    phase: str | None
    reason: str | None
    expected: bool
    """The run ended the way the scenario says it must."""
    report_html: pathlib.Path | None
    elapsed: float
    run_dir: pathlib.Path


def finished(status: dict[str, Any]) -> bool:
    """Terminal, or paused for a reason that will not clear by itself (MetricsUnavailable does)."""
    phase = status.get("phase")
    return phase in TERMINAL_PHASES or (phase == "Paused" and status.get("reason") != "MetricsUnavailable")


def matches(scenario: Scenario, status: dict[str, Any]) -> bool:
    return (
        status.get("phase") == scenario.expected_phase
        and (scenario.expected_reason is None or status.get("reason") == scenario.expected_reason)
        and (scenario.expected_winner is None or status.get("winner") == scenario.expected_winner)
    )


def _raise_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(options: DemoOptions, show: Callable[[Snapshot], None]) -> DemoResult:
    """Run the scenario until it ends or `timeout` passes; always stop everything it started."""
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    options.run_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(options.run_dir / "logs")
    apiserver: ApiServer | None = None
    prometheus: PrometheusServer | None = None
    try:
        apiserver = start_apiserver(options.backend, options.run_dir / "kubeconfig")
        prometheus, gateway_url = _start_processes(options, supervisor, apiserver)
        return _experiment(options, supervisor, apiserver, prometheus, gateway_url, show)
    finally:
        supervisor.stop_all()
        if prometheus is not None:
            prometheus.stop()
        if apiserver is not None:
            apiserver.stop()
        signal.signal(signal.SIGTERM, previous)


def _start_processes(
    options: DemoOptions, supervisor: Supervisor, apiserver: ApiServer
) -> tuple[PrometheusServer, str]:
    """Model servers, gateway, operator and Prometheus; returns Prometheus and the gateway's URL."""
    scenario = options.scenario
    name = scenario.manifest("http://127.0.0.1:1")["metadata"]["name"]
    upstreams = []
    for model in scenario.models:
        command = ["--name", model.name, "--latency", str(model.latency), "--error-rate", str(model.error_rate)]
        if options.seed is not None:
            command += ["--seed", str(options.seed)]
        prefix = python_module("mlrollouts.demo.models", *command)
        child, (port,) = supervisor.start_on_ports(
            model.name, lambda picked, p=prefix: [*p, "--port", str(picked[0])], 1
        )
        upstreams.append((model.name, f"http://127.0.0.1:{port}", child))
    for _, url, child in upstreams:
        supervisor.wait_http(child, f"{url}/healthz")
        _warm_up(url)
    gateway_kubeconfig = gateway_kubeconfig_for(apiserver, NAMESPACE, name, options.run_dir / "gateway.kubeconfig")
    gateway_args = ["gateway", "--kubeconfig", str(gateway_kubeconfig)]
    gateway_args += ["--signing-key-file", str(_signing_key_file(options.run_dir))]
    gateway_args += ["--namespace", NAMESPACE, "--experiment", name, "--user-header", "x-user-id"]
    gateway_args += ["--log-level", "warning"]
    for model_name, url, _ in upstreams:
        gateway_args += ["--upstream", f"{model_name}={url}"]
    gateway, (gateway_port, gateway_metrics_port) = supervisor.start_on_ports(
        "gateway",
        lambda picked: mlrollouts_cli(*gateway_args, "--port", str(picked[0]), "--metrics-port", str(picked[1])),
        2,
    )
    operator_args = ["run", "--standalone", "--namespace", NAMESPACE, "--liveness-port", "0"]
    operator, (operator_port,) = supervisor.start_on_ports(
        "operator",
        lambda picked: mlrollouts_cli(*operator_args, "--metrics-port", str(picked[0])),
        1,
        # The demo compresses hours into minutes: 1-2 s analysis intervals, below the API's 5 s floor.
        env={
            "KUBECONFIG": str(apiserver.kubeconfig),
            "MLROLLOUTS_WATCH_TIMEOUT": "30",
            "MLROLLOUTS_MIN_INTERVAL": "1s",
        },
    )
    supervisor.wait_http(gateway, f"http://127.0.0.1:{gateway_port}/healthz")
    supervisor.wait_http(operator, f"http://127.0.0.1:{operator_port}/metrics")
    targets = [f"127.0.0.1:{gateway_metrics_port}", f"127.0.0.1:{operator_port}"]
    prometheus = PrometheusServer(targets, job_name="mlrollouts-demo")
    prometheus.start()
    return prometheus, f"http://127.0.0.1:{gateway_port}"


def _signing_key_file(run_dir: pathlib.Path) -> pathlib.Path:
    """The key the gateway signs feedback tokens with; in a cluster it is a mounted Secret."""
    path = run_dir / "gateway-signing-key"
    run_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
    return path


def _apply(options: DemoOptions, apiserver: ApiServer, manifest: dict[str, Any]) -> str:
    """kubectl apply when kubectl is installed (what a user would type), else the Python client. The real API
    server validates with kubectl's default; the emulator serves no OpenAPI, so validation is off there."""
    if shutil.which("kubectl"):
        assert apiserver.kubeconfig is not None
        kubectl = Kubectl(apiserver.kubeconfig, options.run_dir / "kubectl-cache")
        validation = [] if isinstance(apiserver, RealApiServer) else [NO_VALIDATION]
        result = kubectl.run("apply", *validation, "-f", "-", input=load_manifest_text(manifest))
        if result.returncode != 0:
            raise DemoError(f"kubectl apply of {options.scenario.manifest_path.name} failed: {result.stderr.strip()}")
        return result.stdout.strip()
    api = kubernetes.client.CustomObjectsApi(_api_client(apiserver))
    api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
    return f"modelexperiment.{GROUP}/{manifest['metadata']['name']} created (kubernetes client)"


def _api_client(apiserver: ApiServer) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=str(apiserver.kubeconfig))


def _experiment(
    options: DemoOptions,
    supervisor: Supervisor,
    apiserver: ApiServer,
    prometheus: PrometheusServer,
    gateway_url: str,
    show: Callable[[Snapshot], None],
) -> DemoResult:
    scenario = options.scenario
    manifest = scenario.manifest(prometheus.address, fast=options.fast)
    name = manifest["metadata"]["name"]
    hint = f"KUBECONFIG={apiserver.kubeconfig} kubectl get mexp -w"
    stats_file = options.run_dir / "traffic.json"
    traffic_args = ["--gateway", gateway_url, "--rate", str(options.rate), "--stats-file", str(stats_file)]
    traffic_args += [arg for m in scenario.models for arg in ("--retention", f"{m.name}={m.retention}")]
    if options.seed is not None:
        traffic_args += ["--seed", str(options.seed)]
    # Users first: the gateway answers 503 until the experiment exists, and every process is warm by then.
    traffic = supervisor.start("traffic", python_module("mlrollouts.demo.traffic", *traffic_args))
    _wait_for_file(supervisor, traffic, stats_file)
    time.sleep(1.0)
    started_wall, started = time.time(), time.monotonic()
    applied = _apply(options, apiserver, manifest)
    log.info("applied %s", applied)
    client = _api_client(apiserver)
    api = kubernetes.client.CustomObjectsApi(client)
    experiment: dict[str, Any] = manifest
    try:
        while True:
            supervisor.check()
            experiment = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
            elapsed = time.monotonic() - started
            show(Snapshot(experiment, elapsed, read_stats(stats_file), hint))
            status = experiment.get("status") or {}
            if finished(status):
                break
            if elapsed > options.timeout:
                raise DemoError(
                    f"timed out after {options.timeout:.0f}s in phase {status.get('phase')} "
                    f"({status.get('reason')}: {status.get('message')}); logs in {options.run_dir / 'logs'}"
                )
            time.sleep(POLL_SECONDS)
        time.sleep(2.5)  # two more scrapes, so the final operator gauges are in Prometheus
        experiment = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    finally:
        client.close()
    data = report.collect(prometheus.address, experiment, started_wall - 2, time.time())
    html = report.write(data, options.run_dir / "report")
    status = experiment.get("status") or {}
    return DemoResult(
        experiment,
        status.get("phase"),
        status.get("reason"),
        matches(scenario, status),
        html,
        time.monotonic() - started,
        options.run_dir,
    )


def _warm_up(url: str, requests: int = 20) -> None:
    """A fresh server's first answers are slow (lazy imports); keep them out of the latency guardrails."""
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for index in range(requests):
            client.post("/predict", json={"user_id": f"warm-up-{index}"})


def _wait_for_file(supervisor: Supervisor, child: Child, path: pathlib.Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        supervisor.check()
        if time.monotonic() > deadline:
            raise DemoError(f"{child.name} wrote no {path.name} within {timeout:.0f}s; log {child.log_path}")
        time.sleep(0.1)


def run_folder(base: pathlib.Path, scenario: Scenario) -> pathlib.Path:
    return base / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{scenario.name}"

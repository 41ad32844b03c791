"""Pytest fixtures for the local stack; enable with `pytest_plugins = ["mlrollouts.localstack.fixtures"]`.

- `local_apiserver`: a running `LocalApiServer` (attributes `.url`, `.kubeconfig`, `.emulator`,
  `.install_crd_files(paths)`, `.ensure_namespace(name)`) with the kubernetes client pointed at it;
- `kubectl`: a `Kubectl` bound to that server's kubeconfig, cache dir in the test's tmp folder;
- `k8s_api_client`: a `kubernetes.client.ApiClient` for that server;
- `prometheus_factory`: `start(targets, job_name=..., rule_files=...) -> PrometheusServer`, all stopped at teardown.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest

from mlrollouts.localstack.kubectl import Kubectl
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.server import LocalApiServer, run_apiserver


@pytest.fixture
def local_apiserver(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalApiServer]:
    """A fresh emulated API server per test; the project CRD is installed when the repo has it."""
    server = run_apiserver(0, tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))
    # The kubernetes client reads $KUBECONFIG at import time, so redirect its default as well.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(server.kubeconfig))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubectl(local_apiserver: LocalApiServer, tmp_path: pathlib.Path) -> Kubectl:
    assert local_apiserver.kubeconfig is not None
    return Kubectl(local_apiserver.kubeconfig, tmp_path / "kubectl-cache")


@pytest.fixture
def k8s_api_client(local_apiserver: LocalApiServer) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=str(local_apiserver.kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    started: list[PrometheusServer] = []

    def start(targets: list[str], **options: Any) -> PrometheusServer:
        server = PrometheusServer(targets, **options)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()

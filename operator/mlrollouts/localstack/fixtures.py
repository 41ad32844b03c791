"""Pytest fixtures for the local stack; enable with `pytest_plugins = ["mlrollouts.localstack.fixtures"]`.

- `local_apiserver`: a running API server on the backend MLROLLOUTS_TEST_BACKEND chooses (testbackend.py;
  attributes `.backend`, `.url`, `.kubeconfig`, `.install_crd_files(paths)`, `.ensure_namespace(name)`) with
  the kubernetes client pointed at it. The real one is started once per session (seconds) and emptied after
  each test; the emulator is fresh per test;
- `emulated_apiserver`: always a fresh emulator (`LocalApiServer`, with `.emulator` for assertions);
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

from mlrollouts.localstack import testbackend
from mlrollouts.localstack.kubectl import Kubectl
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.server import LocalApiServer, run_apiserver


def _point_clients_at(server: testbackend.SuiteApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))
    # The kubernetes client reads $KUBECONFIG at import time, so redirect its default as well.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(server.kubeconfig))


@pytest.fixture
def emulated_apiserver(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalApiServer]:
    """A fresh emulated API server per test; the project CRD is installed when the repo has it."""
    server = run_apiserver(0, tmp_path / "kubeconfig")
    _point_clients_at(server, monkeypatch)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shared_real_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real kube-apiserver + etcd for every test of the session that asks for `local_apiserver`."""
    from mlrollouts.localstack.realcluster import RealApiServer

    server = RealApiServer(kubeconfig_path=tmp_path_factory.mktemp("real-apiserver") / "kubeconfig").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def local_apiserver(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[testbackend.SuiteApiServer]:
    """The API server of MLROLLOUTS_TEST_BACKEND: the session's real one (emptied after the test) or an emulator."""
    if testbackend.resolve() == "emulated":
        yield request.getfixturevalue("emulated_apiserver")
        return
    server = request.getfixturevalue("shared_real_apiserver")
    _point_clients_at(server, monkeypatch)
    try:
        yield server
    finally:
        server.reset()


@pytest.fixture
def kubectl(local_apiserver: testbackend.SuiteApiServer, tmp_path: pathlib.Path) -> Kubectl:
    assert local_apiserver.kubeconfig is not None
    return Kubectl(local_apiserver.kubeconfig, tmp_path / "kubectl-cache")


@pytest.fixture
def k8s_api_client(local_apiserver: testbackend.SuiteApiServer) -> Iterator[kubernetes.client.ApiClient]:
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

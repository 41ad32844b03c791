"""Readiness differs from liveness: an operator whose API server is away stays alive but is not ready."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import time

import httpx
import pytest

from mlrollouts.controller.readiness import Readiness, api_check, experiments_path
from mlrollouts.localstack import ports
from mlrollouts.localstack.fixtures import local_apiserver
from mlrollouts.localstack.testbackend import SuiteApiServer
from mlrollouts.routing.base import RoutingError
from proc_support import refused_port

__all__ = ["local_apiserver"]


def _reason(answer: tuple[int, object] | Exception, namespaces: list[str]) -> str | None:
    async def read_path(path: str) -> tuple[int, object]:
        assert path == experiments_path(namespaces)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return asyncio.run(Readiness(api_check(read_path, namespaces)).reason())


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((200, {}), None),
        (RoutingError("GET /apis: Kubernetes API unreachable"), "Kubernetes API server unreachable"),
        ((403, {}), "HTTP 403 listing ModelExperiments: check the operator's ServiceAccount and RBAC"),
        ((404, {}), "HTTP 404 listing ModelExperiments: is the CRD installed?"),
        (KeyError("surprise"), "KeyError: 'surprise'"),
    ],
)
def test_each_failure_has_a_reason(answer: tuple[int, object] | Exception, reason: str | None) -> None:
    assert _reason(answer, ["ml"]) == reason


def test_the_check_lists_what_the_operator_watches() -> None:
    assert experiments_path(["ml", "b"]) == "/apis/mlrollouts.dev/v1alpha1/namespaces/ml/modelexperiments?limit=1"
    assert experiments_path([]) == "/apis/mlrollouts.dev/v1alpha1/modelexperiments?limit=1"


def test_results_are_cached_so_probes_cannot_load_the_api_server() -> None:
    calls, now = [], [0.0]

    async def check() -> str | None:
        calls.append(now[0])
        return None

    readiness = Readiness(check, cache_seconds=5, clock=lambda: now[0])
    for moment in (0.0, 1.0, 4.9, 5.0, 6.0):
        now[0] = moment
        asyncio.run(readiness.reason())
    assert calls == [0.0, 5.0]


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _operator(kubeconfig: pathlib.Path, log_path: pathlib.Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """The operator on two picked ports it holds itself (ports.start_owning: a port taken meanwhile is re-picked)."""
    command = [sys.executable, "-m", "mlrollouts.cli.main", "run", "--standalone", "--namespace", "default"]
    command += ["--metrics-port", "0"]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    with_ports = lambda picked: [*command, "--liveness-port", str(picked[0]), "--readiness-port", str(picked[1])]  # noqa: E731
    process, (liveness, readiness) = ports.start_owning(with_ports, 2, env, log_path)
    return process, liveness, readiness


def _wait_for(url: str, process: subprocess.Popen[bytes], log_path: pathlib.Path) -> None:
    deadline = time.monotonic() + 60
    while _get(url) is None:
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.mark.integration
def test_an_operator_without_its_api_server_is_alive_but_not_ready(tmp_path: pathlib.Path) -> None:
    dead = refused_port()  # nothing listens there: the API server is away
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{dead}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n"
    )
    log_path = tmp_path / "operator.log"
    process, liveness, readiness = _operator(kubeconfig, log_path)
    try:
        _wait_for(f"http://127.0.0.1:{readiness}/readyz", process, log_path)
        answer = httpx.get(f"http://127.0.0.1:{readiness}/readyz", timeout=5)
        assert answer.status_code == 503
        assert answer.json() == {"ready": False, "reason": "Kubernetes API server unreachable"}
        _wait_for(f"http://127.0.0.1:{liveness}/healthz", process, log_path)
        assert _get(f"http://127.0.0.1:{liveness}/healthz") == 200  # alive: a restart would not bring the API back
    finally:
        _stop(process)


@pytest.mark.integration
def test_an_operator_with_its_api_server_is_ready(local_apiserver: SuiteApiServer, tmp_path: pathlib.Path) -> None:
    log_path = tmp_path / "operator.log"
    process, _, readiness = _operator(local_apiserver.kubeconfig, log_path)
    try:
        _wait_for(f"http://127.0.0.1:{readiness}/readyz", process, log_path)
        answer = httpx.get(f"http://127.0.0.1:{readiness}/readyz", timeout=5)
        assert (answer.status_code, answer.json()) == (200, {"ready": True})
    finally:
        _stop(process)

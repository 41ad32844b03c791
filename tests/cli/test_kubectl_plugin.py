"""`kubectl mlrollouts` (the krew-named console script on PATH), `--version`, `-o yaml`, and `status --watch`
whose exit code says the verdict: 0 ship, 1 do not, 3 inconclusive, 124 timed out."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tomllib

import kubernetes
import pytest
import yaml

import mlrollouts
from mlrollouts.cli.cluster import ClusterError
from mlrollouts.cli.main import main
from mlrollouts.cli.watch import verdict, watch
from mlrollouts.localstack.server import LocalApiServer

REPO = pathlib.Path(__file__).parents[2]
BIN = pathlib.Path(sys.executable).parent
EXAMPLE = REPO / "examples" / "canary-istio.yaml"
API = ("mlrollouts.dev", "v1alpha1", "default", "modelexperiments")


def _create(api: kubernetes.client.ApiClient, name: str, status: dict | None = None) -> None:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"] = {"name": name, "namespace": "default"}
    objects = kubernetes.client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object(*API, manifest)
    if status is not None:
        objects.patch_namespaced_custom_object_status(*API, name, {"status": status})


def _env(server: LocalApiServer) -> dict[str, str]:
    """.venv/bin first on PATH: the real kubectl finds `kubectl-mlrollouts` there as it finds any plugin."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "KUBECONFIG": str(server.kubeconfig)}


def _kubectl(server: LocalApiServer, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "mlrollouts", *args], env=_env(server), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ({"phase": "Promoted", "reason": "ChallengerBetter"}, 0),
        ({"phase": "Paused", "reason": "ReadyToPromote"}, 0),
        ({"phase": "Paused", "reason": "ShadowPassed"}, 0),
        ({"phase": "RolledBack", "reason": "GuardrailFailed"}, 1),
        ({"phase": "Invalid", "reason": "InvalidSpec", "observedGeneration": 1}, 1),
        ({"phase": "Inconclusive", "reason": "Inconclusive"}, 3),
        ({"phase": "Paused", "reason": "SampleRatioMismatch"}, None),
        ({"phase": "Progressing"}, None),
        ({"phase": "Invalid", "reason": "InvalidSpec", "observedGeneration": 1, "generation": 2}, None),
        ({}, None),
    ],
)
def test_verdicts(status: dict, code: int | None) -> None:
    generation = status.pop("generation", 1)
    assert verdict({"metadata": {"generation": generation}, "status": status}) == code


class _Replay:
    """A cluster whose reads return the given objects (or raise) in turn, and a clock that moves per sleep."""

    def __init__(self, *reads: dict | Exception) -> None:
        self.reads, self.now, self.sleeps = list(reads), 0.0, 0

    def get(self, namespace: str, name: str) -> dict:
        read = self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        if isinstance(read, Exception):
            raise read
        return read

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1


def _run(cluster: _Replay, timeout: float | None) -> tuple[int, list[str], list[str]]:
    changes: list[str] = []
    retries: list[str] = []
    code, _ = watch(
        cluster,  # type: ignore[arg-type]
        "default",
        "x",
        timeout=timeout,
        interval=2,
        on_change=lambda obj: changes.append(obj["status"]["phase"]),
        on_retry=retries.append,
        clock=lambda: cluster.now,
        sleep=cluster.sleep,
    )
    return code, changes, retries


def test_watch_reports_each_change_once_survives_a_failed_read_and_ends_on_the_verdict() -> None:
    running = {"status": {"phase": "Progressing", "weightSummary": "churn-v3=10%"}}
    moved = {"status": {"phase": "Progressing", "weightSummary": "churn-v3=20%"}}
    done = {"status": {"phase": "RolledBack", "reason": "GuardrailFailed"}}
    cluster = _Replay(running, running, ClusterError("cannot reach the Kubernetes API"), moved, done)
    code, changes, retries = _run(cluster, timeout=None)
    assert code == 1
    assert changes == ["Progressing", "Progressing", "RolledBack"]
    assert retries == ["cannot reach the Kubernetes API"]


def test_watch_times_out_with_124() -> None:
    cluster = _Replay({"status": {"phase": "Progressing"}})
    code, changes, _ = _run(cluster, timeout=7)
    assert (code, changes, cluster.now) == (124, ["Progressing"], 7)


def test_version_is_the_package_version(capsys: pytest.CaptureFixture) -> None:
    assert main(["--version"]) == 0
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert capsys.readouterr().out == f"mlrollouts {project['version']}\n" == f"mlrollouts {mlrollouts.__version__}\n"


@pytest.mark.integration
def test_status_and_list_print_yaml(
    local_apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient, capsys: pytest.CaptureFixture
) -> None:
    _create(k8s_api_client, "churn-v3", {"phase": "Progressing", "weights": {"churn-v2": 90, "churn-v3": 10}})
    kubeconfig = ["--kubeconfig", str(local_apiserver.kubeconfig)]
    assert main(["status", "churn-v3", "-o", "yaml", *kubeconfig]) == 0
    obj = yaml.safe_load(capsys.readouterr().out)
    assert obj["kind"] == "ModelExperiment" and obj["status"]["weights"] == {"churn-v2": 90, "churn-v3": 10}
    assert main(["list", "-o", "yaml", *kubeconfig]) == 0
    (row,) = yaml.safe_load(capsys.readouterr().out)
    assert (row["name"], row["phase"]) == ("churn-v3", "Progressing")


@pytest.mark.integration
def test_kubectl_plugin_version_and_usage_errors_name_kubectl(local_apiserver: LocalApiServer) -> None:
    version = _kubectl(local_apiserver, "--version")
    assert (version.returncode, version.stdout) == (0, f"mlrollouts {mlrollouts.__version__}\n"), version.stderr
    usage = _kubectl(local_apiserver, "status", "x", "--timeout", "soon", "--watch")
    assert usage.returncode == 2 and "--timeout" in usage.stderr and usage.stderr.count("\n") == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "code"),
    [
        ({"phase": "Promoted", "reason": "ChallengerBetter", "message": "retention +6.1%"}, 0),
        ({"phase": "RolledBack", "reason": "GuardrailFailed", "message": "p95 latency 0.62 s > max 0.5 s"}, 1),
        ({"phase": "Paused", "reason": "ReadyToPromote", "message": "waiting for mlrollouts promote"}, 0),
    ],
)
def test_kubectl_mlrollouts_status_watch_exits_with_the_verdict(
    local_apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient, status: dict, code: int
) -> None:
    _create(k8s_api_client, "churn-v3", status)
    result = _kubectl(local_apiserver, "status", "churn-v3", "--watch", "--timeout", "30s")
    assert result.returncode == code, result.stderr
    assert status["phase"] in result.stdout and status["message"] in result.stdout


@pytest.mark.integration
def test_kubectl_mlrollouts_status_watch_follows_the_change_and_times_out_with_124(
    local_apiserver: LocalApiServer, k8s_api_client: kubernetes.client.ApiClient
) -> None:
    _create(k8s_api_client, "running", {"phase": "Progressing", "weightSummary": "churn-v3=20%"})
    stuck = _kubectl(local_apiserver, "status", "running", "--watch", "--timeout", "1s", "--interval", "0.2")
    assert stuck.returncode == 124, stuck.stderr
    assert "churn-v3=20%" in stuck.stdout and "timed out after 1s" in stuck.stderr

    args = ["kubectl", "mlrollouts", "status", "running", "--watch", "--interval", "0.2"]
    child = subprocess.Popen(args, env=_env(local_apiserver), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        first = child.stdout.readline()  # the watch has read the running experiment
        assert "Progressing" in first and "churn-v3=20%" in first
        objects = kubernetes.client.CustomObjectsApi(k8s_api_client)
        objects.patch_namespaced_custom_object_status(*API, "running", {"status": {"phase": "Promoted"}})
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert "Promoted" in out

"""`mlrollouts apiserver --backend real`: the real kube-apiserver and etcd, built by `make controlplane`.

What the emulator cannot show: a v1.3x server, etcd in /livez, the CRD's CEL rules accepted by the real cost
estimator, kubectl's default (server-side) validation for every example, a bad manifest refused at its field,
and nothing left behind after SIGTERM. Skipped, with the reason, where the binaries are not built.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import yaml
from realcluster_support import REAL_CLUSTER_MARKS, real_cluster

from mlrollouts.localstack.kubectl import Kubectl
from mlrollouts.localstack.realcluster import RealApiServer
from proc_support import alive

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CRD = "modelexperiments.mlrollouts.dev"

pytestmark = REAL_CLUSTER_MARKS


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RealApiServer, Kubectl]]:
    with real_cluster(tmp_path_factory.mktemp("real-apiserver")) as started:
        yield started


def test_the_generated_crd_passes_the_real_cel_checker_and_cost_estimator(
    cluster: tuple[RealApiServer, Kubectl],
) -> None:
    """The API server's own CEL type checker and cost estimator accept every rule (cel-python checks neither;
    two rules that joined [self.champion] + self.challengers were refused until they checked each list apart)."""
    server, _ = cluster
    assert server.rejected_crds == []


def test_kubectl_sees_a_real_v1_3x_server(cluster: tuple[RealApiServer, Kubectl]) -> None:
    _, kubectl = cluster
    result = kubectl.run("version", "-o", "json")
    assert result.returncode == 0, result.stderr
    server = json.loads(result.stdout)["serverVersion"]
    assert server["gitVersion"].startswith("v1.3"), server
    assert server["major"] == "1"


def test_livez_lists_etcd(cluster: tuple[RealApiServer, Kubectl]) -> None:
    server, _ = cluster
    with server.client() as http:
        response = http.get("/livez", params={"verbose": ""})
    assert response.status_code == 200, response.text
    assert "[+]etcd ok" in response.text


def test_rbac_is_enforced_for_anyone_but_the_admin(cluster: tuple[RealApiServer, Kubectl]) -> None:
    _, kubectl = cluster
    assert kubectl.run("auth", "can-i", "list", "pods").stdout.strip() == "yes"
    stranger = kubectl.run("auth", "can-i", "list", "pods", "--as=system:serviceaccount:default:nobody")
    assert stranger.stdout.strip() == "no"


def test_the_crds_are_established_with_their_cel_rules(cluster: tuple[RealApiServer, Kubectl]) -> None:
    _, kubectl = cluster
    names = kubectl.run("get", "crd", "-o", "jsonpath={.items[*].metadata.name}")
    assert names.returncode == 0, names.stderr
    for expected in (CRD, "virtualservices.networking.istio.io", "httproutes.gateway.networking.k8s.io"):
        assert expected in names.stdout.split()
    served = kubectl.run("get", "crd", CRD, "-o", "json")
    crd = json.loads(served.stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    # The create went through the real CEL compiler and cost estimator: the served CRD still has its rules.
    assert served.stdout.count('"rule":') >= 5


@pytest.fixture(scope="module")
def example_namespaces(cluster: tuple[RealApiServer, Kubectl]) -> None:
    _, kubectl = cluster
    namespaces = {yaml.safe_load(path.read_text())["metadata"].get("namespace", "default") for path in EXAMPLES}
    for namespace in sorted(namespaces - {"default"}):
        result = kubectl.run("create", "namespace", namespace)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_every_example_applies_with_kubectls_default_validation(
    cluster: tuple[RealApiServer, Kubectl], example_namespaces: None, example: pathlib.Path
) -> None:
    _, kubectl = cluster
    result = kubectl.run("apply", "-f", str(example))
    assert result.returncode == 0, result.stderr
    assert "created" in result.stdout or "configured" in result.stdout


def _bad(mutate: str) -> str:
    manifest = yaml.safe_load((REPO / "examples" / "canary-service.yaml").read_text())
    manifest["metadata"] = {"name": "bad", "namespace": "default"}
    if mutate == "cel":
        manifest["spec"]["canary"]["steps"] = [10, 25, 50]
    elif mutate == "gates":
        gate = {"name": "confirm", "type": "confirmPromotion", "url": "http://approvals.platform/"}
        manifest["spec"]["webhooks"] = [gate, {**gate, "type": "preStart"}]
    elif mutate == "retries":
        manifest["spec"]["webhooks"] = [{"name": "g", "type": "loadTest", "url": "http://load.test/", "retries": 9}]
    else:
        manifest["spec"]["stategy"] = manifest["spec"].pop("strategy")
    return yaml.safe_dump(manifest)


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        ("cel", "spec.canary.steps", "canary.steps must end at 100"),
        ("typo", 'unknown field "spec.stategy"', "strict decoding error"),
        ("gates", "spec.webhooks[1]", "Duplicate value"),
        ("retries", "spec.webhooks[0].retries", "less than or equal to 5"),
    ],
)
def test_a_bad_manifest_is_refused_by_the_server_at_its_field(
    cluster: tuple[RealApiServer, Kubectl], mutate: str, field: str, words: str
) -> None:
    _, kubectl = cluster
    result = kubectl.run("apply", "-f", "-", input=_bad(mutate))
    assert result.returncode != 0
    assert field in result.stderr and words in result.stderr, result.stderr
    assert kubectl.run("get", "mexp", "bad", "-n", "default").returncode != 0  # nothing was stored


def _children(pid: int) -> list[int]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _exe(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/exe").resolve().name
    except OSError:
        return ""


def _control_plane_children() -> set[int]:
    return {pid for pid in _children(os.getpid()) if alive(pid) and _exe(pid) in {"etcd", "kube-apiserver"}}


def _start_cli(kubeconfig: pathlib.Path, scratch: pathlib.Path) -> subprocess.Popen[str]:
    """`mlrollouts apiserver --backend real`, returned once it printed that it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlrollouts", "apiserver", "--backend", "real", "--kubeconfig", str(kubeconfig)],
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    if "real kube-apiserver" not in lines[1]:
        process.kill()
        pytest.fail("".join(lines) + (process.stderr.read() if process.stderr else ""))
    return process


def test_the_cli_serves_until_sigterm_and_leaves_nothing_behind(tmp_path: pathlib.Path) -> None:
    kubeconfig, scratch = tmp_path / "kubeconfig", tmp_path / "tmp"
    scratch.mkdir()
    process = _start_cli(kubeconfig, scratch)
    try:
        kubectl = Kubectl(kubeconfig, tmp_path / "cache")
        assert kubectl.run("get", "crd", "httproutes.gateway.networking.k8s.io").returncode == 0
        children = _children(process.pid)
        names = {_exe(pid) for pid in children}
        assert {"etcd", "kube-apiserver"} <= names
        assert [p.name for p in scratch.iterdir()], "the data dir lives under TMPDIR while running"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:  # a failed assertion above: stop it the way a user would
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert not [pid for pid in children if alive(pid)]
    assert list(scratch.iterdir()) == []


def test_a_killed_cli_takes_etcd_and_kube_apiserver_with_it(tmp_path: pathlib.Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = _start_cli(tmp_path / "kubeconfig", scratch)
    children = _children(process.pid)
    assert len(children) == 2
    process.kill()  # no chance to clean up: the kernel's parent-death signal still ends both
    process.wait()
    deadline = time.monotonic() + 60
    while [pid for pid in children if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)]


def test_a_crd_the_server_refuses_is_a_usage_error_naming_it(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlrollouts.cli.main import main

    crd = yaml.safe_load((REPO / "tests" / "localstack" / "data" / "modelexperiments.crd.yaml").read_text())
    crd["metadata"]["name"] = "widgets.example.com"
    crd["spec"].update(group="example.com", names={"kind": "Widget", "plural": "widgets", "singular": "widget"})
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["x-kubernetes-validations"] = [{"rule": "self.nosuchfield > 1", "message": "never compiles"}]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(crd))
    before = _control_plane_children()
    argv = ["apiserver", "--backend", "real", "--kubeconfig", str(tmp_path / "kc"), "--crd", str(tmp_path / "bad.yaml")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("mlrollouts: error: --crd: CRD widgets.example.com rejected by the API server (422)")
    assert "nosuchfield" in error
    assert _control_plane_children() <= before  # only the module's own cluster, if it is up


def test_conditions_are_a_map_list_the_server_keeps_unique_by_type(
    cluster: tuple[RealApiServer, Kubectl], example_namespaces: None
) -> None:
    _, kubectl = cluster
    manifest = yaml.safe_load((REPO / "examples" / "canary-service.yaml").read_text())
    manifest["metadata"] = {"name": "conditions", "namespace": "default"}
    assert kubectl.run("apply", "-f", "-", input=yaml.safe_dump(manifest)).returncode == 0
    ready = {"type": "Ready", "status": "False", "reason": "Pending", "observedGeneration": 1}
    twice = json.dumps({"status": {"conditions": [ready, {**ready, "status": "True"}]}})
    refused = kubectl.run("patch", "mexp", "conditions", "--subresource=status", "--type=merge", "-p", twice)
    assert refused.returncode != 0 and "Duplicate value" in refused.stderr, refused.stderr
    once = json.dumps({"status": {"conditions": [ready]}})
    accepted = kubectl.run("patch", "mexp", "conditions", "--subresource=status", "--type=merge", "-p", once)
    assert accepted.returncode == 0, accepted.stderr
    shown = kubectl.run("get", "mexp", "conditions", "-o", "jsonpath={.status.conditions[0].observedGeneration}")
    assert shown.stdout == "1"


def test_a_status_with_an_unbounded_confidence_interval_is_accepted(cluster: tuple[RealApiServer, Kubectl]) -> None:
    """A sequential test's interval starts unbounded ([null, null]); the status holding it must be storable, or
    every status write of a new A/B test is refused with 422 (the emulator does not validate status)."""
    from mlrollouts.api import ModelExperimentStatus

    _, kubectl = cluster
    manifest = next(
        doc
        for path in EXAMPLES
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "ModelExperiment"
    )
    manifest["metadata"] = {"name": "unbounded", "namespace": "default"}
    assert kubectl.run("apply", "-f", "-", input=yaml.safe_dump(manifest)).returncode == 0
    status = ModelExperimentStatus.model_validate({"phase": "Progressing", "evidence": {"churn-v3": {}}}).to_wire()
    assert status["evidence"]["churn-v3"]["confidenceInterval"] == [None, None]
    patch = json.dumps({"status": status})
    result = kubectl.run(
        "patch", "mexp", "unbounded", "-n", "default", "--subresource=status", "--type=merge", "-p", patch
    )
    assert result.returncode == 0, result.stderr
    stored = json.loads(kubectl.run("get", "mexp", "unbounded", "-n", "default", "-o", "json").stdout)
    assert stored["status"]["evidence"]["churn-v3"]["confidenceInterval"] == [None, None]

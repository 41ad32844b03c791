"""Every example and every bad manifest through `kubectl apply` (kubectl's default validation) into the real
kube-apiserver, with the real operator watching: the server itself refuses what the CRD's schema and CEL rules
express, naming the field; what it accepts and the operator does not ends Invalid with the field in its
message; every example is accepted by both. Runs on the real backend only: the emulator checks no schema.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml
from api_support import EXAMPLES
from test_api_bad_manifests import CASES, BadCase, _bad
from test_api_bounds import PROBES, _with

from mlrollouts.api.errors import SpecError
from mlrollouts.cli.api_commands import _cel_messages
from mlrollouts.controller.reading import load
from mlrollouts.localstack import testbackend
from mlrollouts.localstack.kubectl import Kubectl

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        testbackend.resolve() != "real", reason="the emulator checks no schema: needs the real API server"
    ),
]
GROUP, VERSION, PLURAL = "mlrollouts.dev", "v1alpha1", "modelexperiments"
# examples/templates/ need the chart's metric templates and a platform Prometheus address: they run in
# tests/controller/test_metric_templates_end_to_end.py and tests/localstack/test_real_apiserver_templates.py.
ALL_EXAMPLES = sorted(
    p for p in EXAMPLES.rglob("*.yaml") if "ModelExperiment" in p.read_text() and p.parent.name != "templates"
)
# The platform allows the examples' Prometheus addresses and Secrets, as the chart values would.
PROMETHEUS = [yaml.safe_load(p.read_text())["spec"]["analysis"]["prometheus"] for p in ALL_EXAMPLES]
ALLOWED = sorted({prometheus["address"] for prometheus in PROMETHEUS})
SECRETS = sorted({v["name"] for prometheus in PROMETHEUS for k, v in prometheus.items() if k.endswith("SecretRef")})
WAIT_S = 90.0  # a deadline for a failure message, not a speed target


class Cluster:
    """The session's real API server with one operator process watching every namespace."""

    def __init__(self, server: Any, folder: pathlib.Path) -> None:
        self.server = server
        self.kubectl = Kubectl(server.kubeconfig, folder / "kubectl-cache")
        self.api = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
        self.objects = kubernetes.client.CustomObjectsApi(self.api)
        self.log_path = folder / "operator.log"
        command = [sys.executable, "-m", "mlrollouts.cli.main", "run", "--standalone", "--all-namespaces"]
        command += ["--metrics-port", "0", "--liveness-port", "0"]
        command += [arg for address in ALLOWED for arg in ("--prometheus-allowed-address", address)]
        command += [arg for secret in SECRETS for arg in ("--prometheus-secret-name", secret)]
        with self.log_path.open("ab") as log:
            self.operator = subprocess.Popen(
                command, env={**os.environ, "KUBECONFIG": str(server.kubeconfig)}, stdout=log, stderr=log
            )

    def close(self) -> None:
        self.operator.terminate()
        try:
            self.operator.wait(15)
        except subprocess.TimeoutExpired:
            self.operator.kill()
            self.operator.wait(10)
        self.api.close()

    def apply(self, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        """JSON, not YAML: kubectl's YAML 1.1 would read a PromQL name such as `y` as a boolean."""
        return self.kubectl.run("apply", "-f", "-", input=json.dumps(manifest))

    def status_once_seen(self, namespace: str, name: str) -> dict[str, Any]:
        """The status once the operator has written one for the current generation."""
        deadline = time.monotonic() + WAIT_S
        while True:
            obj = self.objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            status = obj.get("status") or {}
            if status.get("phase") and status.get("observedGeneration") == obj["metadata"]["generation"]:
                return status
            if time.monotonic() > deadline:
                log = self.log_path.read_text(errors="replace").splitlines()[-30:]
                raise AssertionError(f"{namespace}/{name}: no status after {WAIT_S:.0f} s: {status}\n" + "\n".join(log))
            time.sleep(0.3)

    def create_secrets(self, namespace: str, prometheus: dict[str, Any]) -> None:
        """The Secrets an example refers to, as its README asks the user to create (a CA file for CA keys)."""
        for field, ref in prometheus.items():
            if field.endswith("SecretRef"):
                value = f"--from-file={ref['key']}={self.server.certs.ca_cert}" if field == "caSecretRef" else None
                value = value or f"--from-literal={ref['key']}=example-token"
                result = self.kubectl.run("create", "secret", "generic", ref["name"], "-n", namespace, value)
                assert result.returncode == 0, result.stderr

    def stored(self, namespace: str, name: str) -> bool:
        return self.kubectl.run("get", "modelexperiment", name, "-n", namespace).returncode == 0


@pytest.fixture(scope="module")
def cluster(shared_real_apiserver: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(shared_real_apiserver, tmp_path_factory.mktemp("real-manifests"))
    try:
        yield cluster
    finally:
        cluster.close()
        shared_real_apiserver.reset()


def _named(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    manifest["metadata"] = {"name": name, "namespace": "default"}
    return manifest


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_is_accepted_by_the_server_and_the_operator(cluster: Cluster, example: pathlib.Path) -> None:
    """Each in a namespace of its own: several examples share a VirtualService, which the operator would
    rightly refuse to hand to two experiments at once."""
    manifest = yaml.safe_load(example.read_text())
    name = manifest["metadata"]["name"]
    namespace = "ex-" + re.sub(r"[^a-z0-9]+", "-", str(example.relative_to(EXAMPLES)).removesuffix(".yaml"))
    manifest["metadata"]["namespace"] = namespace
    cluster.server.ensure_namespace(namespace)
    cluster.create_secrets(namespace, manifest["spec"]["analysis"]["prometheus"])
    result = cluster.kubectl.run("apply", "-f", "-", input=yaml.safe_dump(manifest))
    assert result.returncode == 0, result.stderr
    status = cluster.status_once_seen(namespace, name)
    assert status["phase"] != "Invalid", status.get("message")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_server_refuses_every_bad_manifest_at_its_field(cluster: Cluster, case: BadCase) -> None:
    """Every rule of the corpus is one the CRD's schema or CEL can express, so the server answers it."""
    result = cluster.apply(_named(_bad(case), f"bad-{case.id}"))
    assert result.returncode != 0, f"accepted: {result.stdout}"
    field = case.path  # the operator's form is the API server's: `spec.challengers[0].service`
    lines = [line for line in result.stderr.splitlines() if f"{field}:" in line or f'"{field}' in line]
    assert lines, result.stderr
    if any(case.says in message for message in _cel_messages()):  # a CEL rule: its own words reach the user
        assert any(case.says in line for line in lines), result.stderr
    assert not cluster.stored("default", f"bad-{case.id}")


def _operator_fields(manifest: dict[str, Any]) -> set[str]:
    """The fields the operator's own check (the model and the PromQL/template checks) names."""
    try:
        load(manifest)
    except SpecError as error:
        return {problem.path for problem in error.problems}
    return set()


OPERATOR_ONLY = {name: mutate for name, mutate in PROBES.items() if _operator_fields(_with(mutate))}


@pytest.mark.parametrize("probe", list(OPERATOR_ONLY))
def test_what_the_server_lets_through_the_operator_marks_invalid_naming_the_field(cluster: Cluster, probe: str) -> None:
    """PromQL syntax, template variables, duration and count overflows: the server refuses those its schema
    can express at the field; the rest it stores, and the operator marks them Invalid with the field."""
    name = "probe-" + re.sub(r"[^a-z0-9]+", "-", probe.lower()).strip("-")
    manifest = _named(_with(OPERATOR_ONLY[probe]), name)
    fields = _operator_fields(manifest)
    result = cluster.apply(manifest)
    if result.returncode != 0:
        assert any(field + ":" in result.stderr for field in fields), (fields, result.stderr)
        assert not cluster.stored("default", name)
        return
    status = cluster.status_once_seen("default", name)
    assert status["phase"] == "Invalid", status
    assert status["reason"] == "InvalidSpec"
    for field in fields:
        assert f"{field}: " in status["message"], status["message"]

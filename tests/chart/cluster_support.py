"""The chart on the real API server: the repo's helm, a ServiceAccount token kubeconfig, the audit log, and
the operator started out of cluster with the arguments of the chart's own Deployment.

The real kube-apiserver stores the Deployment but runs no pod, so the operator runs here as a process; it
authenticates with a token the TokenRequest API issued for the chart's ServiceAccount, so every request it
makes is authorised by the chart's (Cluster)Roles exactly as in a cluster.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import yaml

from controller.stack import OperatorProcess
from mlrollouts.localstack import binaries, ports
from mlrollouts.localstack.realcluster import RealApiServer
from mlrollouts.localstack.serviceaccounts import token_kubeconfig

RELEASE_NAMESPACE = "mlrollouts-system"
CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "mlrollouts"
PORT_FLAGS = ("--metrics-port=", "--liveness-port=", "--readiness-port=")
# Metadata of every request, without the RequestReceived stage: one line per answered request, with its code.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


def audit_args(folder: pathlib.Path) -> list[str]:
    """kube-apiserver flags that log every request (user, verb, resource, code) to folder/audit.log."""
    policy = folder / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY), encoding="utf-8")
    return [f"--audit-policy-file={policy}", f"--audit-log-path={folder / 'audit.log'}", "--audit-log-maxsize=0"]


def audit_events(folder: pathlib.Path, user: str) -> list[dict[str, Any]]:
    """The audit events of `user`'s requests (ResponseComplete stage, so each has its HTTP code)."""
    path = folder / "audit.log"
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [e for e in events if e["user"]["username"] == user and e["stage"] == "ResponseComplete"]


def describe(event: dict[str, Any]) -> str:
    ref = event.get("objectRef") or {}
    what = "/".join(p for p in (ref.get("apiGroup"), ref.get("resource"), ref.get("subresource")) if p)
    code = event["responseStatus"]["code"]
    return f"{event['verb']} {what or event['requestURI']} ns={ref.get('namespace')} -> {code}"


class Helm:
    """The helm built by `make controlplane`, with its own config, cache and data folders."""

    def __init__(self, kubeconfig: pathlib.Path, home: pathlib.Path) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),  # helm's discovery cache goes to $HOME/.kube: keep it out of the working folder
            "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binaries.path("helm")), *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
        return result

    def manifest(self, release: str) -> list[dict[str, Any]]:
        """The objects of the release as helm installed them."""
        text = self.run("get", "manifest", release, "--namespace", RELEASE_NAMESPACE).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]


def service_account_kubeconfig(
    server: RealApiServer, service_account: str, path: pathlib.Path, namespace: str = RELEASE_NAMESPACE
) -> pathlib.Path:
    """A kubeconfig holding a token the TokenRequest API issued for the ServiceAccount (what a pod mounts)."""
    return token_kubeconfig(server, namespace, service_account, path)


def operator_args(manifest: list[dict[str, Any]]) -> list[str]:
    """The operator container's arguments from the release's Deployment (ChartOperator gives its ports local values)."""
    deployment = next(o for o in manifest if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("mlrollouts"))
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"]
    assert container["command"] == ["mlrollouts"]
    return list(container["args"])


# What the kubelet fills in from the downward API for the chart's pod, run here as a local process.
DOWNWARD = {"metadata.namespace": RELEASE_NAMESPACE, "metadata.name": "local", "status.podIP": "127.0.0.1"}


def operator_env(manifest: list[dict[str, Any]]) -> dict[str, str]:
    """The operator container's literal and downward-API variables (POD_NAMESPACE: where its Leases live)."""
    deployment = next(o for o in manifest if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("mlrollouts"))
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"]
    env = {}
    for variable in container.get("env") or []:
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        elif "fieldRef" in (variable.get("valueFrom") or {}):
            env[variable["name"]] = DOWNWARD[variable["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


class ChartOperator(OperatorProcess):
    """`mlrollouts <the Deployment's args>` as the ServiceAccount: what the chart's pod would run."""

    def __init__(
        self, kubeconfig: pathlib.Path, log_path: pathlib.Path, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        super().__init__(kubeconfig, log_path)
        self.args, self.pod_env = args, env or {}

    def start(self) -> ChartOperator:
        """Each port flag on a picked local port the process then holds itself (ports.start_owning)."""
        flags = [f for arg in self.args for f in PORT_FLAGS if arg.startswith(f)]

        def command(picked: list[int]) -> list[str]:
            chosen = dict(zip(flags, picked, strict=True))
            args = [next((f"{f}{chosen[f]}" for f in flags if arg.startswith(f)), arg) for arg in self.args]
            return [sys.executable, "-m", "mlrollouts.cli.main", *args]

        env = {**os.environ, **self.pod_env, "KUBECONFIG": str(self.kubeconfig), "MLROLLOUTS_WATCH_TIMEOUT": "30"}
        env.setdefault("POD_NAME", "local")
        self.process, picked = ports.start_owning(command, len(flags), env, self.log_path)
        self.metrics_port = dict(zip(flags, picked, strict=True))["--metrics-port="]
        return self

"""Which Kubernetes API server the demo runs on: the real one (etcd + kube-apiserver built from source by
`make controlplane`) when it is built, else the emulator; and how the gateway authenticates to it.
"""

from __future__ import annotations

import pathlib

from mlrollouts import GROUP, PLURAL
from mlrollouts.demo.processes import DemoError
from mlrollouts.localstack import binaries
from mlrollouts.localstack.realcluster import RealApiServer
from mlrollouts.localstack.server import LocalApiServer, run_apiserver

GATEWAY_ACCOUNT = "mlrollouts-gateway"
ApiServer = LocalApiServer | RealApiServer


def choose_backend(requested: str | None = None) -> tuple[str, str]:
    """(backend, a line saying which and why): real when its binaries are built, unless told otherwise."""
    if requested == "emulated":
        return "emulated", "API server: emulated (--backend emulated)"
    if binaries.available():
        kube = next((v.split("=", 1)[1] for v in _versions() if v.startswith("kubernetes=")), "(version unknown)")
        return "real", f"API server: real kube-apiserver {kube} + etcd, built from source ({binaries.bin_dir()})"
    if requested == "real":
        raise DemoError(f"--backend real: {binaries.unavailable_reason()}")
    return "emulated", f"API server: emulated, the fallback ({binaries.unavailable_reason()} for the real one)"


def _versions() -> list[str]:
    try:
        return (binaries.bin_dir() / "VERSIONS").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def start_apiserver(backend: str, kubeconfig: pathlib.Path) -> ApiServer:
    """The API server with the project's CRD, its admin kubeconfig written to `kubeconfig`."""
    if backend == "real":
        return RealApiServer(kubeconfig_path=kubeconfig).start()
    return run_apiserver(0, kubeconfig)


def gateway_kubeconfig_for(apiserver: ApiServer, namespace: str, experiment: str, path: pathlib.Path) -> pathlib.Path:
    """Real backend: a token of the gateway's own ServiceAccount, allowed to read its one experiment (the chart's
    gateway Role, plus list/watch on that name). The emulator has no RBAC: the admin kubeconfig."""
    assert apiserver.kubeconfig is not None
    if not isinstance(apiserver, RealApiServer):
        return apiserver.kubeconfig
    from mlrollouts.localstack.serviceaccounts import create_service_account, token_kubeconfig

    rule = {
        "apiGroups": [GROUP],
        "resources": [PLURAL],
        "resourceNames": [experiment],
        "verbs": ["get", "list", "watch"],
    }
    create_service_account(apiserver, namespace, GATEWAY_ACCOUNT, [rule])
    return token_kubeconfig(apiserver, namespace, GATEWAY_ACCOUNT, path)

"""`mlrollouts apiserver`: run a local Kubernetes API server in the foreground, real or emulated.

`real` is etcd + kube-apiserver built from Go modules by `make controlplane` (the default once built);
`emulated` is the kmock-based emulator for demos and tests (in memory, no auth). Production runs on a real
cluster.
"""

from __future__ import annotations

import enum
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from mlrollouts.cli.extras import import_local
from mlrollouts.cli.main import UsageFailure, app

logger = logging.getLogger(__name__)


def _checked_crd_files(files: list[Path], load_crds: Callable[[Path], list]) -> list[Path]:
    for path in files:
        if not path.is_file():
            raise UsageFailure("--crd", f"{path} does not exist; pass a YAML file with CustomResourceDefinitions")
        try:
            crds = load_crds(path)
        except Exception as error:  # a YAML parse error, reported as a usage problem
            raise UsageFailure("--crd", f"{path} is not valid YAML: {error}") from error
        if not crds:
            raise UsageFailure("--crd", f"{path} holds no CustomResourceDefinition document")
    return files


class Backend(enum.StrEnum):
    real = "real"
    emulated = "emulated"


def _wait_until_stopped(stop_after: float | None) -> None:
    """Block until Ctrl-C, SIGTERM or `stop_after` seconds; SIGTERM ends the wait like Ctrl-C does."""

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        threading.Event().wait(timeout=stop_after)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _chosen_backend(backend: Backend | None) -> Backend:
    binaries = import_local("mlrollouts.localstack.binaries", "apiserver")
    if backend is Backend.real and not binaries.available():
        raise UsageFailure("--backend", f"real: {binaries.unavailable_reason()}, or pass --backend emulated")
    if backend is None:
        backend = Backend.real if binaries.available() else Backend.emulated
    return backend


def _run_real(port: int, kubeconfig: Path, files: list[Path], stop_after: float | None) -> None:
    realcluster = import_local("mlrollouts.localstack.realcluster", "apiserver")
    crdinstall = import_local("mlrollouts.localstack.crdinstall", "apiserver")
    server = realcluster.RealApiServer(port, kubeconfig, files)
    typer.echo("Starting etcd and kube-apiserver (real backend) on 127.0.0.1 ...")
    try:
        server.start()
    except OSError as error:
        raise UsageFailure("--port", f"cannot listen on 127.0.0.1:{port}: {error}; pick another port or 0") from error
    except crdinstall.CrdRejected as error:
        raise UsageFailure("--crd", str(error)) from error
    except realcluster.ControlPlaneError as error:
        raise UsageFailure("--backend", f"real: the control plane did not start: {error}") from error
    try:
        installed = len(server.builtin_crds) + len(server.crd_files) - len(server.rejected_crds)
        typer.echo(
            f"Kubernetes API (real kube-apiserver, RBAC on) at {server.url}, ready in {server.startup_seconds:.1f} s;"
            f" {installed} CRD files installed."
        )
        for problem in server.rejected_crds:  # served anyway: the other CRDs and the API stay usable
            typer.echo(f"warning: {problem}", err=True)
        typer.echo(f"export KUBECONFIG={kubeconfig}   # admin (system:masters); then: kubectl get mexp")
        _wait_until_stopped(stop_after)
    finally:
        server.stop()


def _run_emulated(port: int, kubeconfig: Path, files: list[Path], stop_after: float | None) -> None:
    server_module = import_local("mlrollouts.localstack.server", "apiserver")
    ApiError = import_local("mlrollouts.localstack.semantics", "apiserver").ApiError
    try:
        server = server_module.run_apiserver(port, kubeconfig, files)
    except OSError as error:
        raise UsageFailure("--port", f"cannot listen on 127.0.0.1:{port}: {error}; pick another port or 0") from error
    except ApiError as error:
        raise UsageFailure("--crd", f"a CRD was rejected: {error.message}") from error
    crd_file = server_module.PROJECT_CRD
    installed = "ModelExperiment CRD installed" if crd_file.exists() else f"no CRD at {crd_file}"
    typer.echo(f"Emulated Kubernetes API (for demos and tests) at {server.url}; {installed}.")
    typer.echo(f"export KUBECONFIG={server.kubeconfig}   # then: kubectl get mexp")
    try:
        _wait_until_stopped(stop_after)
    finally:
        server.stop()


@app.command("apiserver")
def apiserver_command(
    kubeconfig: Annotated[Path, typer.Option("--kubeconfig", help="Where to write a kubeconfig for this server.")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 picks a free one).", min=0, max=65535)] = 0,
    backend: Annotated[
        Backend | None,
        typer.Option("--backend", help="real (etcd + kube-apiserver; default once `make controlplane` built them)."),
    ] = None,
    crd: Annotated[
        list[Path] | None, typer.Option("--crd", help="Extra CRD file to install (repeatable), e.g. Istio's.")
    ] = None,
    stop_after: Annotated[
        float | None, typer.Option("--stop-after", help="Stop after this many seconds (for scripts).", min=0)
    ] = None,
) -> None:
    """Run a local Kubernetes API server on 127.0.0.1: the real one or an emulator.

    --backend real (the default once `make controlplane` built the binaries) starts etcd and kube-apiserver
    with fresh certificates and RBAC, installs the ModelExperiment, Istio, Gateway API and Prometheus
    Operator CRDs and writes an admin kubeconfig; kubectl's default validation works.

    --backend emulated runs the EMULATED Kubernetes API server (in memory, no auth): use
    `kubectl apply --validate=false` and JSON manifests. Both stop on Ctrl-C or SIGTERM and leave no process
    or data behind. Production runs on a real Kubernetes cluster.
    """
    # The whole local extra, whichever backend: the same one-line hint where it is missing.
    import_local("mlrollouts.localstack.server", "apiserver")
    import_local("mlrollouts.localstack.certs", "apiserver")
    crdinstall = import_local("mlrollouts.localstack.crdinstall", "apiserver")
    files = _checked_crd_files(list(crd or []), crdinstall.load_crds)
    chosen = _chosen_backend(backend)
    if chosen is Backend.real:
        _run_real(port, kubeconfig, files, stop_after)
    else:
        _run_emulated(port, kubeconfig, files, stop_after)

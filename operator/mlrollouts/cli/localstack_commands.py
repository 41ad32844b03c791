"""`mlrollouts apiserver`: run the local Kubernetes API emulator in the foreground.

It is an emulator for demos and tests (kmock-based, in memory, no auth); production runs on a real cluster.
"""

from __future__ import annotations

import logging
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


@app.command("apiserver")
def apiserver_command(
    kubeconfig: Annotated[Path, typer.Option("--kubeconfig", help="Where to write a kubeconfig for this server.")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 picks a free one).", min=0, max=65535)] = 0,
    crd: Annotated[
        list[Path] | None, typer.Option("--crd", help="Extra CRD file to install (repeatable), e.g. Istio's.")
    ] = None,
    stop_after: Annotated[
        float | None, typer.Option("--stop-after", help="Stop after this many seconds (for scripts).", min=0)
    ] = None,
) -> None:
    """Run an EMULATED Kubernetes API server on 127.0.0.1 for demos and tests (not a real cluster).

    It installs the ModelExperiment CRD from the repository, creates the `default` namespace, and
    writes a kubeconfig. Use `kubectl apply --validate=false` (no OpenAPI documents are served) and
    JSON manifests (`kubectl create namespace` sends protobuf, which it refuses). Ctrl-C stops it.
    Production runs on a real Kubernetes cluster.
    """
    server_module = import_local("mlrollouts.localstack.server", "apiserver")
    ApiError = import_local("mlrollouts.localstack.semantics", "apiserver").ApiError
    files = _checked_crd_files(list(crd or []), server_module.load_crds)
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
    stopped = threading.Event()
    try:
        stopped.wait(timeout=stop_after)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        server.stop()

"""Which API server the integration suites run on: MLROLLOUTS_TEST_BACKEND=real|emulated|auto (auto default).

`auto` picks the real kube-apiserver + etcd when `make controlplane` built them and the emulator otherwise;
`real` without the binaries is an error rather than a silent fallback. Both servers offer the same surface
to the suites (`backend`, `url`, `kubeconfig`, `install_crd_files`, `ensure_namespace`, `stop`), so a fixture
starts one without knowing which. The emulator's own tests (tests/localstack) always use the emulator.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable
from typing import Any, Protocol

from mlrollouts.localstack import binaries

ENV_VAR = "MLROLLOUTS_TEST_BACKEND"
CHOICES = ("real", "emulated", "auto")


class BackendError(RuntimeError):
    """MLROLLOUTS_TEST_BACKEND names no backend, or `real` without the built binaries."""


class SuiteApiServer(Protocol):
    """What the suites use of either server."""

    backend: str
    kubeconfig: pathlib.Path | None

    @property
    def url(self) -> str: ...

    def install_crd_files(self, paths: Iterable[str | pathlib.Path]) -> list[Any]: ...

    def ensure_namespace(self, name: str) -> dict[str, Any]: ...

    def stop(self) -> None: ...


def resolve(value: str | None = None) -> str:
    """`real` or `emulated` from the variable (or `value`); raises BackendError with the fix."""
    choice = (value if value is not None else os.environ.get(ENV_VAR, "auto")).strip().lower() or "auto"
    if choice not in CHOICES:
        raise BackendError(f"{ENV_VAR}={choice!r}: use one of {', '.join(CHOICES)}")
    if choice == "auto":
        return "real" if binaries.available() else "emulated"
    if choice == "real" and not binaries.available():
        raise BackendError(f"{ENV_VAR}=real: {binaries.unavailable_reason()}, or set {ENV_VAR}=emulated")
    return choice


def describe() -> str:
    """The pytest header line: the backend in use and why."""
    try:
        backend = resolve()
    except BackendError as error:
        return f"mlrollouts API server backend: ERROR {error}"
    where = f"binaries in {binaries.bin_dir()}" if backend == "real" else binaries.unavailable_reason()
    if backend == "emulated" and binaries.available():
        where = f"{ENV_VAR}=emulated"
    return f"mlrollouts API server backend: {backend} ({where})"


def start(kubeconfig_path: str | pathlib.Path, backend: str | None = None) -> SuiteApiServer:
    """Start the chosen server with the ModelExperiment CRD and write an admin kubeconfig."""
    if resolve(backend) == "real":
        from mlrollouts.localstack.realcluster import RealApiServer

        return RealApiServer(kubeconfig_path=kubeconfig_path).start()
    from mlrollouts.localstack.server import run_apiserver

    return run_apiserver(0, kubeconfig_path)

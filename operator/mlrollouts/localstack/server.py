"""Run the emulated API server on 127.0.0.1 in a background thread with its own event loop.

A thread of its own lets synchronous code (the kubernetes client, kubectl subprocesses) and other
event loops (kopf runs its own) use the server at the same time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import pathlib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import kmock
import yaml

from mlrollouts.localstack.crdinstall import PROJECT_CRDS, load_crds
from mlrollouts.localstack.emulator import ApiServerEmulator

logger = logging.getLogger(__name__)
T = TypeVar("T")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
PROJECT_CRD = REPO_ROOT / "crds" / "modelexperiments.mlrollouts.dev.yaml"
START_TIMEOUT_S = 10.0


def kubeconfig_document(url: str, context: str = "mlrollouts-local") -> dict[str, Any]:
    """A kubeconfig with no auth pointing at the emulator, with the current context set."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}],
        "current-context": context,
        "preferences": {},
    }


class LocalApiServer:
    """The emulator served on 127.0.0.1:port from a daemon thread; start() / stop() or a `with` block."""

    backend = "emulated"

    def __init__(self, port: int = 0, kubeconfig_path: str | pathlib.Path | None = None) -> None:
        self.requested_port = port
        self.kubeconfig: pathlib.Path | None = pathlib.Path(kubeconfig_path) if kubeconfig_path else None
        self.emulator = ApiServerEmulator()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the local API server is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalApiServer:
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="mlrollouts-apiserver", daemon=True)
        self._thread.start()
        self._port = started.result(timeout=START_TIMEOUT_S)
        if self.kubeconfig is not None:
            self.write_kubeconfig(self.kubeconfig)
        logger.info("local apiserver started url=%s kubeconfig=%s", self.url, self.kubeconfig)
        return self

    def _run(self, started: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve(started))
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
            raise
        finally:
            self._loop.close()

    async def _serve(self, started: concurrent.futures.Future[int]) -> None:
        self._stopping = asyncio.Event()
        port = self.requested_port or None
        async with self.emulator, kmock.Server(self.emulator, host="127.0.0.1", port=port) as server:
            started.set_result(server.port)
            await self._stopping.wait()
            self.emulator.changes.close()
            await asyncio.sleep(0.05)  # let open watch streams end before the server closes

    def stop(self) -> None:
        if self._loop is None or self._thread is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=START_TIMEOUT_S)
        self._thread = None
        logger.info("local apiserver stopped port=%s", self._port)

    def __enter__(self) -> LocalApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the server's loop: the emulator is not thread-safe, its loop owns it."""
        if self._loop is None:
            return function()

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=START_TIMEOUT_S)

    def write_kubeconfig(self, path: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(kubeconfig_document(self.url), sort_keys=False), encoding="utf-8")
        self.kubeconfig = path
        return path

    def install_crd(self, crd: Mapping[str, Any]) -> dict[str, Any]:
        return self.call(lambda: self.emulator.install_crd(crd))

    def install_crd_files(self, paths: Iterable[str | pathlib.Path]) -> list[str]:
        """Install every CRD in the files; returns the CRD names (e.g. for the Istio/Gateway API CRDs)."""
        names = []
        for path in paths:
            for crd in load_crds(path):
                names.append(self.install_crd(crd)["metadata"]["name"])
        return names

    def ensure_namespace(self, name: str) -> dict[str, Any]:
        return self.call(lambda: self.emulator.ensure_namespace(name))


def run_apiserver(
    port: int = 0,
    kubeconfig_path: str | pathlib.Path | None = None,
    crd_paths: Iterable[str | pathlib.Path] = (),
    install_project_crd: bool = True,
) -> LocalApiServer:
    """Start the emulator (port 0 = a free port), install CRDs and write the kubeconfig; call .stop() after."""
    server = LocalApiServer(port, kubeconfig_path).start()
    try:
        files = [path for path in PROJECT_CRDS if path.exists()] if install_project_crd else []
        server.install_crd_files([*files, *crd_paths])
    except BaseException:
        server.stop()
        raise
    return server

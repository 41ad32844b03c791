"""Launch the real `prometheus` binary on a free loopback port for demos and integration tests.

Scrape and rule evaluation run every second; `start()` returns only after the first scrape of every
target has landed (`up == 1`), so a test can query immediately instead of sleeping.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

import httpx
import yaml

from mlrollouts.localstack import ports

logger = logging.getLogger(__name__)
INSTALL_HINT = "install it with 'apt-get install prometheus' (or 'make install')"


class PrometheusError(RuntimeError):
    """Prometheus could not be started or did not become ready in time."""


class _PortTaken(Exception):
    """Prometheus exited because another process took its port first: start it on another."""


free_port = ports.free_port  # kept for importers; see localstack/ports.py for why a start checks its port


def find_binary(binary: str | None = None) -> str:
    path = binary or shutil.which("prometheus") or "/usr/bin/prometheus"
    if not pathlib.Path(path).exists():
        raise PrometheusError(f"prometheus binary not found at {path!r}: {INSTALL_HINT}")
    return path


class PrometheusServer:
    """A prometheus process over static `host:port` targets; a context manager that always stops it."""

    def __init__(
        self,
        targets: Sequence[str],
        job_name: str = "mlrollouts",
        rule_files: Iterable[str | pathlib.Path] = (),
        enable_lifecycle: bool = False,
        binary: str | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.targets = list(targets)
        self.job_name = job_name
        self.rule_files = [pathlib.Path(path).resolve() for path in rule_files]
        self.enable_lifecycle = enable_lifecycle
        self.binary = binary
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log: BinaryIO | None = None

    @property
    def address(self) -> str:
        if self.port is None:
            raise PrometheusError("prometheus is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [{"job_name": self.job_name, "static_configs": [{"targets": self.targets}]}],
        }

    def start(self) -> PrometheusServer:
        binary = find_binary(self.binary)
        self._workdir = tempfile.TemporaryDirectory(prefix="mlrollouts-prometheus-")
        workdir = pathlib.Path(self._workdir.name)
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        for attempt in range(1, ports.PORT_ATTEMPTS + 1):
            try:
                self._start_on(binary, config_path, workdir, ports.free_port())
                break
            except _PortTaken:
                self._stop_process()
                if attempt == ports.PORT_ATTEMPTS:
                    message = f"prometheus lost its port {ports.PORT_ATTEMPTS} times: {self._log_tail()}"
                    self.stop()
                    raise PrometheusError(message) from None
            except BaseException:
                self.stop()
                raise
        assert self.process is not None
        logger.info("prometheus started address=%s targets=%s pid=%s", self.address, self.targets, self.process.pid)
        return self

    def _start_on(self, binary: str, config_path: pathlib.Path, workdir: pathlib.Path, port: int) -> None:
        self.port = port
        command = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        if self.enable_lifecycle:
            command.append("--web.enable-lifecycle")
        self._log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)
        self._wait_until_scraped()

    def _log_tail(self) -> str:
        if self._workdir is None:
            return ""
        path = pathlib.Path(self._workdir.name) / "prometheus.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _wait_until_scraped(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(base_url=self.address, timeout=2.0) as client:
            ready = False
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    if ports.lost_port(self._log_tail()):
                        raise _PortTaken
                    raise PrometheusError(f"prometheus exited with code {self.process.returncode}: {self._log_tail()}")
                try:
                    if not ready:  # ours: another process may answer on a port taken before Prometheus bound it
                        owned = self.port is not None and ports.owns_listener(self.process.pid, self.port)
                        ready = owned and client.get("/-/ready").status_code == 200
                    if ready and self._all_targets_up(client):
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise PrometheusError(
            f"prometheus at {self.address} did not scrape every target {self.targets} with up == 1 "
            f"within {self.startup_timeout_s:.0f}s; check that the targets serve /metrics"
        )

    def _all_targets_up(self, client: httpx.Client) -> bool:
        if not self.targets:
            return True
        query = f'up{{job="{self.job_name}"}} == 1'
        result = client.get("/api/v1/query", params={"query": query}).json()["data"]["result"]
        return {series["metric"]["instance"] for series in result} >= set(self.targets)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate, wait, kill if it does not exit; remove the temporary storage."""
        self._stop_process(timeout_s)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def _stop_process(self, timeout_s: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if self.process is not None:
            logger.info("prometheus stopped pid=%s returncode=%s", self.process.pid, self.process.returncode)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

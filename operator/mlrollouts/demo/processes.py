"""Child processes that are always stopped: each in its own process group, logs in the run folder.

A process group per child means SIGTERM reaches anything it spawned too (uvicorn workers, kopf tasks);
a child that ignores SIGTERM for `grace` seconds gets SIGKILL. `check()` turns an unexpected exit into an
error carrying the tail of that child's log, so a failed demo says which part failed and why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from mlrollouts.localstack import ports

log = logging.getLogger(__name__)


class DemoError(RuntimeError):
    """The demo could not run as planned; the message says which part and what to do."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def mlrollouts_cli(*args: str) -> list[str]:
    """`mlrollouts ARGS...` as a child process of this interpreter (no reliance on PATH)."""
    return python_module("mlrollouts.cli.main", *args)


class Supervisor:
    def __init__(self, log_dir: pathlib.Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as output:
            process = subprocess.Popen(
                list(command),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        log.info("started name=%s pid=%s log=%s", name, process.pid, log_path)
        return child

    def start_on_ports(
        self,
        name: str,
        command_for: Callable[[list[int]], Sequence[str]],
        count: int,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> tuple[Child, list[int]]:
        """`start` with `count` picked ports on the command line, returned once the child holds them all itself;
        started again on new ports when its log says one was taken between the pick and its bind (ports.py)."""
        for attempt in range(1, ports.PORT_ATTEMPTS + 1):
            picked = [ports.free_port() for _ in range(count)]
            log_path = self.log_dir / f"{name}.log"
            offset = log_path.stat().st_size if log_path.exists() else 0
            child = self.start(name, command_for(picked), env)
            deadline = time.monotonic() + timeout
            while child.process.poll() is None and time.monotonic() < deadline:
                if all(ports.owns_listener(child.process.pid, port) for port in picked):
                    break
                time.sleep(0.1)
            lost = child.process.poll() is not None and ports.lost_port(
                log_path.read_bytes()[offset:].decode(errors="replace")
            )
            if not lost or attempt == ports.PORT_ATTEMPTS:
                return child, picked
            self.children.remove(child)
            log.warning("name=%s lost a port of %s before binding it; starting it on new ones", name, picked)
        raise AssertionError("unreachable: the last attempt returns")

    def check(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise DemoError(
                    f"{child.name} exited with code {code}; its log {child.log_path} ends with:\n{child.log_tail()}"
                )

    def stop(self, child: Child, grace: float = 5.0) -> None:
        if child.process.poll() is None:
            _signal_group(child.process.pid, signal.SIGTERM)
            try:
                child.process.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(child.process.pid, signal.SIGKILL)
                child.process.wait(grace)
        _signal_group(child.process.pid, signal.SIGKILL)  # leftovers of the group, if any
        log.info("stopped name=%s pid=%s returncode=%s", child.name, child.process.pid, child.process.returncode)

    def stop_all(self) -> None:
        """Newest first, so the traffic stops before the gateway and the gateway before its upstreams."""
        while self.children:
            child = self.children.pop()
            try:
                self.stop(child)
            except Exception:  # keep stopping the others
                log.exception("could not stop name=%s pid=%s", child.name, child.process.pid)

    def wait_http(self, child: Child, url: str, timeout: float = 30.0) -> None:
        """Until `url` answers 200 from the child itself (not from a process that took the port before the child
        bound it: localstack/ports.py); fails early, with the child's log, if the child exits."""
        port = httpx.URL(url).port or 80
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if child.process.poll() is not None:
                    self.check()
                try:
                    if ports.owns_listener(child.process.pid, port) and client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise DemoError(f"{child.name} did not answer {url} within {timeout:.0f}s; log {child.log_path}")


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)

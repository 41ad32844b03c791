"""Ports for the local stack's child processes (exporter, Prometheus, operators, etcd, kube-apiserver).

A child is told its port on the command line, so the port is picked before the child binds it: `free_port`
binds port 0 and releases it, and between that and the child's own bind anyone may take it: another test's
server on this shared machine, or an outgoing connection given it as its ephemeral port. The child then fails
to start, or worse, a readiness probe on that port is answered by the other process and the child's death is
noticed only later (bench_operator "lost" its operator mid-run that way). So a child counts as started only
once `owns_listener` sees the listening socket among its own file descriptors, and a start that lost the port
is retried on a new one (`PORT_ATTEMPTS`).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import time
from collections.abc import Callable, Mapping

PORT_ATTEMPTS = 4
"""Starts tried, each on a fresh port, before a port race is reported as a failure."""
ADDRESS_IN_USE = ("address already in use", "errno 98", "eaddrinuse")
"""How a child's log says it lost the race (Python, Go and etcd wordings), lower-cased."""


def free_port() -> int:
    """A port that was free a moment ago: a candidate only (see the module docstring)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on `port` (any address), from /proc/net/tcp and tcp6."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in pathlib.Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def owns_listener(pid: int, port: int) -> bool:
    """`pid` holds the socket listening on `port`, not some other process (Linux /proc; same user)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return True
    return False


def lost_port(log_text: str) -> bool:
    """The child's log says its port was taken (so a start on another port may succeed)."""
    lowered = log_text.lower()
    return any(words in lowered for words in ADDRESS_IN_USE)


def start_owning(
    command_for: Callable[[list[int]], list[str]],
    count: int,
    env: Mapping[str, str],
    log_path: pathlib.Path,
    timeout: float = 120.0,
    pick: Callable[[], int] | None = None,
) -> tuple[subprocess.Popen[bytes], list[int]]:
    """A child given `count` picked ports on its command line, returned once it holds every one of their listeners
    itself (or exited, or `timeout` passed: the caller reads the log); started again on new ports when its log says
    a port was taken first. `pick` defaults to this module's `free_port`, looked up per call so that a test can
    hand out a taken port."""
    for _ in range(PORT_ATTEMPTS):
        picked = [(pick or free_port)() for _ in range(count)]
        offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            child = subprocess.Popen(command_for(picked), env=dict(env), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while child.poll() is None and time.monotonic() < deadline:
            if all(owns_listener(child.pid, port) for port in picked):
                break
            time.sleep(0.1)
        if child.poll() is None or not lost_port(log_path.read_bytes()[offset:].decode(errors="replace")):
            return child, picked
    return child, picked

"""Processes and ports for tests: /proc checks of what a command leaves running, and addresses nothing serves."""

from __future__ import annotations

import pathlib
import socket

_HELD: list[socket.socket] = []


def alive(pid: int) -> bool:
    """Running: a zombie (exited, not yet reaped by its parent) does not count."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def refused_port() -> int:
    """A loopback port that refuses every connection for the rest of the test run: bound here and never listened
    on, so no other process can take it and start answering (a port merely free a moment ago can be)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    _HELD.append(holder)
    return int(holder.getsockname()[1])

"""Reading processes from /proc in tests that check what a command leaves running."""

from __future__ import annotations

import pathlib


def alive(pid: int) -> bool:
    """Running: a zombie (exited, not yet reaped by its parent) does not count."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

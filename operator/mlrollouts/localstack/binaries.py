"""Where `make controlplane` (controlplane/build.sh) put kube-apiserver, etcd and helm, if it did.

The build runs once per machine into the user's cache, outside any venv, and points `current` at the last
complete build. MLROLLOUTS_CONTROLPLANE_BIN names another folder with the same binaries.
"""

from __future__ import annotations

import os
import pathlib

ENV_VAR = "MLROLLOUTS_CONTROLPLANE_BIN"
REQUIRED = ("kube-apiserver", "etcd")


def cache_root() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "mlrollouts" / "controlplane"


def bin_dir() -> pathlib.Path:
    """The folder searched for the binaries (it may not exist)."""
    configured = os.environ.get(ENV_VAR)
    return pathlib.Path(configured) if configured else cache_root() / "current" / "bin"


def missing() -> list[str]:
    """The required binaries that are not built (empty when the real backend can run)."""
    folder = bin_dir()
    return [name for name in REQUIRED if not os.access(folder / name, os.X_OK)]


def available() -> bool:
    return not missing()


def path(name: str) -> pathlib.Path:
    return bin_dir() / name


def unavailable_reason() -> str:
    """One line saying why the real backend cannot run and how to fix it."""
    return f"{', '.join(missing())} not built in {bin_dir()}: run `make controlplane` (needs Go)"

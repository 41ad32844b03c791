"""Run the real kubectl against the local API server, with its discovery cache kept in a temp folder."""

from __future__ import annotations

import os
import pathlib
import subprocess

# The emulator serves no /openapi documents, so client-side validation must be off for apply/create.
NO_VALIDATION = "--validate=false"


class Kubectl:
    """`kubectl` bound to one kubeconfig and cache dir (kubectl would otherwise write ~/.kube/cache)."""

    def __init__(self, kubeconfig: str | pathlib.Path, cache_dir: str | pathlib.Path) -> None:
        self.kubeconfig = pathlib.Path(kubeconfig)
        self.cache_dir = pathlib.Path(cache_dir)

    def command(self, *args: str) -> list[str]:
        return ["kubectl", *args, f"--cache-dir={self.cache_dir}"]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def run(self, *args: str, input: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run to completion and return the result (check `.returncode`, `.stdout`, `.stderr`)."""
        return subprocess.run(
            self.command(*args), env=self.environment(), input=input, capture_output=True, text=True, timeout=timeout
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start a long-running command such as `get -w`; the caller terminates it."""
        return subprocess.Popen(
            self.command(*args), env=self.environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

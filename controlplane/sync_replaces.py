#!/usr/bin/env python3
"""Replace every k8s.io staging module with its published v0.X.Y, read from the monorepo's own go.mod.

k8s.io/kubernetes requires its staging modules at v0.0.0 and maps them to ./staging/... with replace
directives that Go ignores in a dependency (kubernetes/kubernetes#79384). Run after changing the
kubernetes version: `python3 sync_replaces.py v1.37.2` then `go mod tidy`.
"""

from __future__ import annotations

import json
import subprocess
import sys


def staging_modules(kubernetes_version: str) -> list[str]:
    """The k8s.io modules the monorepo maps to ./staging at this version."""
    info = json.loads(
        subprocess.check_output(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{kubernetes_version}"])
    )
    gomod = json.loads(subprocess.check_output(["go", "mod", "edit", "-json", info["GoMod"]]))
    return sorted(r["Old"]["Path"] for r in gomod.get("Replace") or [] if r["New"]["Path"].startswith("./staging/"))


def main() -> None:
    version = sys.argv[1]  # e.g. v1.37.2 -> staging v0.37.2
    staging = "v0." + version.removeprefix("v1.")
    args = []
    for module in staging_modules(version):
        args.append(f"-replace={module}={module}@{staging}")
    subprocess.check_call(["go", "mod", "edit", f"-require=k8s.io/kubernetes@{version}", *args])
    print(f"{len(args)} staging modules replaced with {staging}")


if __name__ == "__main__":
    main()

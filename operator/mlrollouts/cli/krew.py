"""The krew plugin: a reproducible archive holding the `kubectl-mlrollouts` launcher, and its manifest.

krew installs plugins from an archive named in a manifest with its sha256. The CLI is a
Python package, so the archive holds a small launcher that runs the installed `mlrollouts` CLI (the manifest's
caveats say to `pipx install mlrollouts`); the package's own `kubectl-mlrollouts` console script does the same
for pip users without krew. The archive is byte-for-byte reproducible (fixed mtimes, owners and gzip header),
so anyone can check the sha256 a manifest names.

No release has been published, so the repo holds the manifest as a template (krew/mlrollouts.yaml.tmpl) and no
address that does not exist. `python -m mlrollouts.cli.krew [DIR] [--release-url URL --homepage URL]` (`make
krew`) writes the archive to DIR (default dist/) and, given the release's URLs, DIR/mlrollouts.yaml: the
template filled in and checked against the fields krew requires. The release uploads the archive to URL.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pathlib
import re
import string
import sys
import tarfile
from typing import Any

import yaml

from mlrollouts import __version__

BIN = "kubectl-mlrollouts"
TEMPLATE = pathlib.Path(__file__).parents[3] / "krew" / "mlrollouts.yaml.tmpl"
LAUNCHER = """#!/bin/sh
# kubectl mlrollouts: the mlrollouts CLI as a kubectl plugin (installed by krew).
if command -v mlrollouts >/dev/null 2>&1; then
  exec mlrollouts "$@"
fi
echo "kubectl mlrollouts: the mlrollouts CLI is not installed: pipx install mlrollouts (Python 3.11+)" >&2
exit 127
"""


def archive_name(version: str = __version__) -> str:
    return f"{BIN}_v{version}.tar.gz"


def archive_bytes() -> bytes:
    """The tar.gz: the launcher (mode 0755) only, with every varying header field fixed."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = LAUNCHER.encode()
        info = tarfile.TarInfo(BIN)
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def render(template: str, *, release_url: str, homepage: str, sha256: str, version: str = __version__) -> str:
    """krew/mlrollouts.yaml.tmpl filled in for a release; ValueError if the result lacks what krew requires."""
    uri = f"{release_url.rstrip('/')}/{archive_name(version)}"
    values = {"version": f"v{version}", "homepage": homepage, "uri": uri, "sha256": sha256}
    text = string.Template(template).substitute(values)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    problems = plugin_problems(yaml.safe_load(body))
    if problems:
        raise ValueError("the krew manifest would be refused: " + "; ".join(problems))
    return f"# krew plugin manifest of mlrollouts v{version}, rendered from {TEMPLATE}.\n{body}\n"


def plugin_problems(plugin: Any) -> list[str]:
    """What krew's manifest validation would refuse in the fields this manifest uses (krew's Plugin v1alpha2)."""
    problems = []
    if not isinstance(plugin, dict):
        return ["not a YAML mapping"]
    if plugin.get("apiVersion") != "krew.googlecontainertools.github.com/v1alpha2" or plugin.get("kind") != "Plugin":
        problems.append("apiVersion/kind must be krew.googlecontainertools.github.com/v1alpha2 Plugin")
    name = (plugin.get("metadata") or {}).get("name") or ""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) or name.startswith("kubectl-"):
        problems.append(f"metadata.name {name!r}: lowercase letters, digits and dashes, no kubectl- prefix")
    spec = plugin.get("spec") or {}
    if not re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", str(spec.get("version"))):
        problems.append(f"spec.version {spec.get('version')!r}: a semantic version with a leading v")
    if not str(spec.get("homepage") or "").startswith("https://"):
        problems.append("spec.homepage: an https:// URL")
    if not spec.get("shortDescription") or len(spec["shortDescription"]) > 80:
        problems.append("spec.shortDescription: required, at most 80 characters")
    platforms = spec.get("platforms") or []
    if not platforms:
        problems.append("spec.platforms: at least one")
    for index, platform in enumerate(platforms):
        where = f"spec.platforms[{index}]"
        if not str(platform.get("uri") or "").startswith("https://"):
            problems.append(f"{where}.uri: an https:// URL of the archive")
        if not re.fullmatch(r"[0-9a-f]{64}", str(platform.get("sha256"))):
            problems.append(f"{where}.sha256: 64 lowercase hex digits")
        if not platform.get("bin"):
            problems.append(f"{where}.bin: required")
        if not (platform.get("selector") or {}).get("matchExpressions") and not (platform.get("selector") or {}).get(
            "matchLabels"
        ):
            problems.append(f"{where}.selector: matchLabels or matchExpressions")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlrollouts.cli.krew", description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="dist", help="where to write the archive (and manifest)")
    parser.add_argument("--release-url", help="https URL of the release's files, where the archive will be uploaded")
    parser.add_argument("--homepage", help="https URL of the project's home page (krew's spec.homepage)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = archive_bytes()
    (out / archive_name()).write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    print(f"wrote {out / archive_name()} (sha256 {sha256})")
    if not args.release_url or not args.homepage:
        print(f"no manifest: pass --release-url and --homepage to render {TEMPLATE} for a release")
        return 0
    try:
        text = render(TEMPLATE.read_text(), release_url=args.release_url, homepage=args.homepage, sha256=sha256)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    (out / "mlrollouts.yaml").write_text(text)
    print(f"wrote {out / 'mlrollouts.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

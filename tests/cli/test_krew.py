"""The krew manifest in the repo is complete, matches the archive the code builds, and the archive's launcher
runs the CLI (or says how to install it)."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tomllib

import yaml

from mlrollouts.cli.krew import BIN, archive_bytes, render_manifest

REPO = pathlib.Path(__file__).parents[2]
MANIFEST = REPO / "krew" / "mlrollouts.yaml"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_the_committed_manifest_matches_the_archive_the_code_builds() -> None:
    sha256 = hashlib.sha256(archive_bytes()).hexdigest()
    assert MANIFEST.read_text() == render_manifest(sha256), "run `make krew` and commit krew/mlrollouts.yaml"
    assert archive_bytes() == archive_bytes()  # reproducible: anyone can check the sha256


def test_the_manifest_has_every_field_krew_requires() -> None:
    plugin = yaml.safe_load(MANIFEST.read_text())
    assert plugin["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2" and plugin["kind"] == "Plugin"
    assert plugin["metadata"]["name"] == "mlrollouts" == BIN.removeprefix("kubectl-")
    spec = plugin["spec"]
    assert spec["version"] == f"v{VERSION}"
    assert spec["homepage"].startswith("https://")
    assert 0 < len(spec["shortDescription"]) <= 80 and spec["description"].strip()
    assert spec["platforms"]
    for platform in spec["platforms"]:
        expressions = platform["selector"]["matchExpressions"]
        assert {v for e in expressions if e["key"] == "os" for v in e["values"]} == {"linux", "darwin"}
        assert platform["uri"].startswith("https://") and platform["uri"].endswith(f"v{VERSION}.tar.gz")
        assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
        assert platform["bin"] == BIN


def _extract(tmp_path: pathlib.Path) -> pathlib.Path:
    with tarfile.open(fileobj=io.BytesIO(archive_bytes()), mode="r:gz") as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode) == (BIN, 0o755)
        tar.extractall(tmp_path, filter="data")
    return tmp_path / BIN


def test_the_launcher_runs_the_installed_cli(tmp_path: pathlib.Path) -> None:
    launcher = _extract(tmp_path)
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin"}
    result = subprocess.run([str(launcher), "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"mlrollouts {VERSION}\n"), result.stderr


def test_the_launcher_says_how_to_install_the_cli_when_it_is_missing(tmp_path: pathlib.Path) -> None:
    launcher = _extract(tmp_path)
    result = subprocess.run(
        [str(launcher), "list"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 127 and "pipx install mlrollouts" in result.stderr

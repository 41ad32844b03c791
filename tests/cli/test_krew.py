"""The krew manifest template renders, for a release, to a manifest krew accepts that names the archive the code
builds; the repo names no release that does not exist; the archive's launcher runs the CLI (or says how to
install it)."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import subprocess
import sys
import tarfile
import tomllib

import pytest
import yaml

from mlrollouts.cli.krew import BIN, TEMPLATE, archive_bytes, archive_name, main, plugin_problems, render

REPO = pathlib.Path(__file__).parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
RELEASE = f"https://downloads.example.org/mlrollouts/v{VERSION}"
HOME = "https://mlrollouts.example.org"


def test_the_repo_names_no_release_that_does_not_exist() -> None:
    """No release is published: the manifest is a template, its archive address and checksum left to fill."""
    assert not (REPO / "krew" / "mlrollouts.yaml").exists()
    assert TEMPLATE == REPO / "krew" / "mlrollouts.yaml.tmpl"
    text = TEMPLATE.read_text()
    assert "releases/download" not in text and "${uri}" in text and "${sha256}" in text
    assert archive_bytes() == archive_bytes()  # reproducible: anyone can check the sha256 a release names


def test_the_template_renders_to_a_manifest_with_every_field_krew_requires() -> None:
    sha256 = hashlib.sha256(archive_bytes()).hexdigest()
    plugin = yaml.safe_load(render(TEMPLATE.read_text(), release_url=RELEASE, homepage=HOME, sha256=sha256))
    assert plugin_problems(plugin) == []
    assert plugin["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2" and plugin["kind"] == "Plugin"
    assert plugin["metadata"]["name"] == "mlrollouts" == BIN.removeprefix("kubectl-")
    spec = plugin["spec"]
    assert (spec["version"], spec["homepage"]) == (f"v{VERSION}", HOME)
    assert 0 < len(spec["shortDescription"]) <= 80 and spec["description"].strip() and spec["caveats"].strip()
    (platform,) = spec["platforms"]
    expressions = platform["selector"]["matchExpressions"]
    assert {v for e in expressions if e["key"] == "os" for v in e["values"]} == {"linux", "darwin"}
    assert platform["uri"] == f"{RELEASE}/{archive_name()}" and platform["uri"].endswith(f"v{VERSION}.tar.gz")
    assert (platform["sha256"], platform["bin"]) == (sha256, BIN)


def test_a_release_without_https_addresses_or_a_checksum_is_refused() -> None:
    with pytest.raises(ValueError, match=r"spec\.platforms\[0\]\.uri.*spec\.platforms\[0\]\.sha256"):
        render(TEMPLATE.read_text(), release_url="http://plain", homepage=HOME, sha256="not-a-checksum")
    with pytest.raises(ValueError, match=r"spec\.homepage"):
        render(TEMPLATE.read_text(), release_url=RELEASE, homepage="", sha256="0" * 64)


def test_make_krew_writes_the_archive_and_the_rendered_manifest_for_a_release(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "plain")]) == 0
    assert "pass --release-url and --homepage" in capsys.readouterr().out
    assert not (tmp_path / "plain" / "mlrollouts.yaml").exists()
    assert main([str(tmp_path), "--release-url", RELEASE, "--homepage", HOME]) == 0
    archive = (tmp_path / archive_name()).read_bytes()
    plugin = yaml.safe_load((tmp_path / "mlrollouts.yaml").read_text())
    assert plugin["spec"]["platforms"][0]["sha256"] == hashlib.sha256(archive).hexdigest()
    assert plugin_problems(plugin) == []


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

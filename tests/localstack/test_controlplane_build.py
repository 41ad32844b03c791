"""`make controlplane` never fails `make install`: without Go, or when the build fails, it says so in one line,
exits 0, and `mlrollouts apiserver` falls back to the emulator (or names the fix for `--backend real`)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from mlrollouts.cli.main import main

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = REPO / "controlplane" / "build.sh"
BASH = shutil.which("bash") or "/bin/bash"
# A `go` that answers the questions build.sh asks and fails to compile, as a broken toolchain or proxy would.
FAILING_GO = """#!/bin/sh
case "$1" in
  version) echo "go version go1.26.8 linux/amd64" ;;
  env) echo "https://proxy.example,direct" ;;
  list) echo "v1.37.2" ;;
  build) echo "go: downloading k8s.io/kubernetes: connection refused" >&2; exit 1 ;;
esac
"""


def _run(tmp_path: pathlib.Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run([BASH, str(BUILD)], env=env, capture_output=True, text=True, timeout=60, check=False)


def _path_without_go(tmp_path: pathlib.Path) -> pathlib.Path:
    """A PATH of its own with the tools build.sh needs, so that go is absent whatever this machine has."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    tools = ("cat", "dirname", "sha256sum", "cut", "mkdir", "mktemp", "rm", "mv", "ln", "tail", "sed", "tr", "grep")
    for tool in (*tools, "paste", "sleep", "flock"):
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    return folder


def test_without_go_it_says_so_in_one_line_and_succeeds(tmp_path: pathlib.Path) -> None:
    result = _run(tmp_path, str(_path_without_go(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "Go not found" in result.stdout and "emulator" in result.stdout
    assert not (tmp_path / "cache").exists()


def test_a_failed_build_says_so_keeps_nothing_and_succeeds(tmp_path: pathlib.Path) -> None:
    folder = _path_without_go(tmp_path)
    (folder / "go").write_text(FAILING_GO)
    (folder / "go").chmod(0o755)
    result = _run(tmp_path, str(folder))
    assert result.returncode == 0, result.stderr
    assert "build failed" in result.stdout and "emulator stays in use" in result.stdout
    assert "connection refused" in result.stdout  # the log's last lines say why
    root = tmp_path / "cache" / "mlrollouts" / "controlplane"
    assert not (root / "current").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".build-")]  # the staging folder is gone


def test_real_backend_without_binaries_names_the_fix(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLROLLOUTS_CONTROLPLANE_BIN", str(tmp_path / "none"))
    assert main(["apiserver", "--backend", "real", "--kubeconfig", str(tmp_path / "kc")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("mlrollouts: error: --backend: real: ")
    assert "make controlplane" in error and "--backend emulated" in error
    assert not (tmp_path / "kc").exists()


@pytest.mark.integration
def test_without_binaries_the_default_is_the_emulator(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLROLLOUTS_CONTROLPLANE_BIN", str(tmp_path / "none"))
    assert main(["apiserver", "--kubeconfig", str(tmp_path / "kc"), "--stop-after", "0.1"]) == 0
    assert "Emulated Kubernetes API" in capsys.readouterr().out


def _replaces(gomod: str) -> dict[str, str]:
    """`old => new` lines of a go.mod, single-line or in a block."""
    pairs = {}
    for line in gomod.splitlines():
        if "=>" in line:
            old, new = line.removeprefix("replace").split("=>")
            pairs[old.strip().split()[0]] = new.strip()
    return pairs


def test_every_staging_module_is_replaced_by_its_published_version() -> None:
    gomod = (REPO / "controlplane" / "go.mod").read_text()
    version = next(line.split()[1] for line in gomod.splitlines() if line.strip().startswith("k8s.io/kubernetes "))
    staging = "v0." + version.removeprefix("v1.")
    replaces = _replaces(gomod)
    assert replaces and all(new == f"{old} {staging}" for old, new in replaces.items())
    go = shutil.which("go")
    modcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True).stdout.strip() if go else ""
    monorepo = pathlib.Path(modcache or "/nonexistent") / "cache/download/k8s.io/kubernetes/@v" / f"{version}.mod"
    if not monorepo.is_file():
        pytest.skip(f"k8s.io/kubernetes {version} is not in the module cache: `make controlplane` downloads it")
    wanted = {old for old, new in _replaces(monorepo.read_text()).items() if new.startswith("./staging/")}
    assert set(replaces) == wanted

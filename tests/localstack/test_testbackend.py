"""MLROLLOUTS_TEST_BACKEND: auto follows the built binaries, `real` without them stops with the fix, a typo
names the choices; the pytest header says which backend runs."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from mlrollouts.localstack import binaries, testbackend

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def built(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A binaries folder with (stand-in) executables, so `auto` sees a built control plane."""
    for name in binaries.REQUIRED:
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv(binaries.ENV_VAR, str(tmp_path))
    return tmp_path


@pytest.fixture
def not_built(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binaries.ENV_VAR, str(tmp_path / "empty"))


def test_auto_is_real_once_built_and_the_emulator_before(built: pathlib.Path, monkeypatch) -> None:
    monkeypatch.delenv(testbackend.ENV_VAR, raising=False)
    assert testbackend.resolve() == "real"
    monkeypatch.setenv(binaries.ENV_VAR, str(built / "elsewhere"))
    assert testbackend.resolve() == "emulated"
    assert "not built" in testbackend.describe() and "make controlplane" in testbackend.describe()


def test_emulated_is_chosen_even_when_built(built: pathlib.Path, monkeypatch) -> None:
    monkeypatch.setenv(testbackend.ENV_VAR, "emulated")
    assert testbackend.resolve() == "emulated"
    assert testbackend.describe().endswith("(MLROLLOUTS_TEST_BACKEND=emulated)")


def test_real_without_the_binaries_is_an_error_with_the_fix(not_built: None, monkeypatch) -> None:
    monkeypatch.setenv(testbackend.ENV_VAR, "real")
    with pytest.raises(testbackend.BackendError, match=r"make controlplane.*MLROLLOUTS_TEST_BACKEND=emulated"):
        testbackend.resolve()


def test_a_typo_names_the_choices(monkeypatch) -> None:
    monkeypatch.setenv(testbackend.ENV_VAR, "reall")
    with pytest.raises(testbackend.BackendError, match="use one of real, emulated, auto"):
        testbackend.resolve()


def test_the_pytest_header_names_the_backend_and_real_without_binaries_stops_the_run(tmp_path) -> None:
    env = {**os.environ, testbackend.ENV_VAR: "emulated"}
    run = [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider", "tests/engine/test_abtest.py"]
    shown = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "mlrollouts API server backend: emulated" in shown.stdout
    env.update({testbackend.ENV_VAR: "real", binaries.ENV_VAR: str(tmp_path)})
    stopped = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 4, stopped.stdout + stopped.stderr  # pytest's usage error
    assert "MLROLLOUTS_TEST_BACKEND=real: kube-apiserver, etcd not built" in stopped.stderr

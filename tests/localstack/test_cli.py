"""`mlrollouts apiserver`: help says it is an emulator; bad input is one line and exit 2; it serves."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from mlrollouts.cli.main import main


def test_help_says_it_is_an_emulator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apiserver", "--help"]) == 0
    text = capsys.readouterr().out
    assert "EMULATED Kubernetes API server" in text and "real Kubernetes cluster" in text


def test_missing_crd_file_is_a_usage_error(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["apiserver", "--kubeconfig", str(tmp_path / "kc"), "--crd", str(tmp_path / "none.yaml")])
    assert code == 2
    assert capsys.readouterr().err.startswith("mlrollouts: error: --crd: ")


@pytest.mark.integration
def test_runs_and_writes_a_kubeconfig(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    crd = pathlib.Path(__file__).parent / "data" / "modelexperiments.crd.yaml"
    kubeconfig = tmp_path / "kc"
    argv = ["apiserver", "--backend", "emulated", "--kubeconfig", str(kubeconfig), "--crd", str(crd)]
    assert main([*argv, "--stop-after", "0.2"]) == 0
    config = yaml.safe_load(kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    assert server.startswith("http://127.0.0.1:")
    assert config["current-context"] == config["contexts"][0]["name"]
    assert server in capsys.readouterr().out

"""`make demo` runs on the real API server when `make controlplane` built it, on the emulator otherwise, and its
first line says which. On the real one the gateway reads its experiment as its own ServiceAccount."""

from __future__ import annotations

import pathlib
import shutil
import ssl

import httpx
import pytest
import yaml

from mlrollouts.cli.main import main
from mlrollouts.demo.backend import GATEWAY_ACCOUNT, choose_backend, gateway_kubeconfig_for
from mlrollouts.demo.processes import DemoError
from mlrollouts.localstack import binaries
from mlrollouts.localstack.binaries import ENV_VAR
from mlrollouts.localstack.realcluster import RealApiServer

needs_real = pytest.mark.skipif(not binaries.available(), reason=binaries.unavailable_reason())


@pytest.fixture
def nothing_built(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "empty"))


@needs_real
def test_the_real_backend_is_the_default_once_built() -> None:
    backend, line = choose_backend()
    assert backend == "real" and line.startswith("API server: real kube-apiserver v1.")
    assert choose_backend("emulated")[0] == "emulated"


def test_without_the_binaries_the_emulator_is_the_fallback_and_says_why(nothing_built: None) -> None:
    backend, line = choose_backend()
    assert backend == "emulated"
    assert "kube-apiserver, etcd not built" in line and "make controlplane" in line


def test_asking_for_the_real_backend_without_it_is_one_line_naming_the_fix(
    nothing_built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DemoError, match="make controlplane"):
        choose_backend("real")
    assert main(["demo", "--backend", "real", "--output", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "--backend" in err and "make controlplane" in err and "Traceback" not in err


@needs_real
@pytest.mark.integration
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_the_gateways_token_reads_its_experiment_and_nothing_else(tmp_path: pathlib.Path) -> None:
    with RealApiServer(kubeconfig_path=tmp_path / "kubeconfig") as server:
        path = gateway_kubeconfig_for(server, "default", "churn-v3", tmp_path / "gateway.kubeconfig")
        config = yaml.safe_load(path.read_text())
        token = config["users"][0]["user"]["token"]
        assert config["contexts"][0]["name"] == GATEWAY_ACCOUNT
        with server.client() as admin:  # the experiment, created by the admin
            experiment = {"apiVersion": "mlrollouts.dev/v1alpha1", "kind": "ModelExperiment"}
            manifest = yaml.safe_load((pathlib.Path(__file__).parents[2] / "examples" / "demo-better.yaml").read_text())
            experiment.update(metadata={"name": "churn-v3", "namespace": "default"}, spec=manifest["spec"])
            created = admin.post("/apis/mlrollouts.dev/v1alpha1/namespaces/default/modelexperiments", json=experiment)
            assert created.status_code == 201, created.text
        base = "/apis/mlrollouts.dev/v1alpha1/namespaces/default/modelexperiments"
        with httpx.Client(
            base_url=server.url,
            verify=ssl.create_default_context(cafile=str(server.certs.ca_cert)),
            headers={"Authorization": f"Bearer {token}"},
        ) as gateway:
            assert gateway.get(f"{base}/churn-v3").status_code == 200
            assert gateway.get(f"{base}/other").status_code == 403
            assert (
                gateway.patch(
                    f"{base}/churn-v3", json={}, headers={"Content-Type": "application/merge-patch+json"}
                ).status_code
                == 403
            )

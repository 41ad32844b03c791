"""The gateway following a ModelExperiment's status on the emulated Kubernetes API server."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import kubernetes
import pytest
import yaml

from mlrollouts.gateway import GatewayConfig, serve_gateway_in_thread
from mlrollouts.localstack.fixtures import local_apiserver
from mlrollouts.localstack.server import LocalApiServer

# The emulator (emulated_apiserver) whatever MLROLLOUTS_TEST_BACKEND says, until this suite is moved.
__all__ = ["local_apiserver"]
pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo-shadow.yaml"
GROUP, VERSION, PLURAL = "mlrollouts.dev", "v1alpha1", "modelexperiments"


def wait_for(condition, what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_gateway_follows_weights_and_shadow_phase_from_the_api(
    local_apiserver: LocalApiServer, models, tmp_path: Path
) -> None:
    experiment = yaml.safe_load(EXAMPLE.read_text())
    name, namespace = experiment["metadata"]["name"], experiment["metadata"]["namespace"]
    local_apiserver.ensure_namespace(namespace)
    api = kubernetes.client.CustomObjectsApi(
        kubernetes.config.new_client_from_config(config_file=str(local_apiserver.kubeconfig))
    )
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, experiment)

    def set_status(status: dict) -> None:
        api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})

    config = GatewayConfig(
        experiment=name,
        upstreams={variant: url for variant, (_, url) in models.items()},
        kubeconfig=local_apiserver.kubeconfig,
        namespace=namespace,
        split_poll_seconds=0.1,
    ).validate()
    with serve_gateway_in_thread(config) as urls, httpx.Client(base_url=urls.public, timeout=5) as client:

        def served(user: str) -> str:
            return client.post("/predict", json={"user_id": user}).headers["x-mlrollouts-variant"]

        wait_for(lambda: client.get("/readyz").status_code == 200, "the first split")
        assert {served(f"u{index}") for index in range(20)} == {"churn-v2"}  # no status yet: champion only

        set_status({"phase": "Progressing", "weights": {"churn-v2": 0, "churn-v3": 100}})
        wait_for(lambda: served("u1") == "churn-v3", "status.weights to apply")

        set_status({"phase": "Shadowing", "weights": {"churn-v2": 100, "churn-v3": 0}})
        wait_for(lambda: client.get(f"{urls.metrics}/readyz").json()["shadow"], "the Shadowing phase")
        before = len(models["churn-v3"][0].received)
        assert served("u1") == "churn-v2"
        wait_for(lambda: len(models["churn-v3"][0].received) == before + 1, "the mirrored request")

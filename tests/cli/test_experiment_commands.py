"""`mlrollouts status | list | promote | rollback | pause | resume` against the emulated API server."""

from __future__ import annotations

import json
import pathlib

import kubernetes
import pytest
import yaml

from mlrollouts.cli.main import main
from mlrollouts.localstack.testbackend import SuiteApiServer

pytestmark = pytest.mark.integration
EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "canary-istio.yaml"


def _create(api: kubernetes.client.ApiClient, name: str, status: dict | None = None) -> dict:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"] = {"name": name, "namespace": "default"}
    objects = kubernetes.client.CustomObjectsApi(api)
    created = objects.create_namespaced_custom_object(
        "mlrollouts.dev", "v1alpha1", "default", "modelexperiments", manifest
    )
    if status is not None:
        created = objects.patch_namespaced_custom_object_status(
            "mlrollouts.dev", "v1alpha1", "default", "modelexperiments", name, {"status": status}
        )
    return created


def _annotations(api: kubernetes.client.ApiClient, name: str) -> dict:
    obj = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
        "mlrollouts.dev", "v1alpha1", "default", "modelexperiments", name
    )
    return obj["metadata"].get("annotations") or {}


RUNNING = {
    "phase": "Progressing",
    "step": 1,
    "weights": {"churn-v2": 90, "churn-v3": 10},
    "samples": {"churn-v2": {"successes": 720, "trials": 1000}, "churn-v3": {"successes": 80, "trials": 100}},
    "analysis": {"decision": "continue", "pValue": 0.41, "reason": "p 0.41 ≥ alpha 0.05: keep going"},
    "evidence": {
        "churn-v3": {
            "pValue": 0.41,
            "confidenceInterval": [-0.031, None],
            "looks": 12,
            "restarts": 1,
            "epochs": {"weight": 80.0, "weightedEstimate": 0.4, "weightedVariance": 0.01, "epochs": 1},
        }
    },
    "guardrails": [
        {"name": "p95-latency", "value": 0.61, "threshold": "max 0.5", "consecutiveFailures": 2, "healthy": False}
    ],
    "history": [{"time": "2026-11-24T10:00:00Z", "action": "advance", "from": "5", "to": "10", "reason": "step 1"}],
}


def test_status_shows_phase_weights_samples_reason_and_guardrails(
    local_apiserver: SuiteApiServer, k8s_api_client: kubernetes.client.ApiClient, capsys: pytest.CaptureFixture
) -> None:
    _create(k8s_api_client, "churn-v3", RUNNING)
    code = main(["status", "churn-v3", "--kubeconfig", str(local_apiserver.kubeconfig)])
    out = capsys.readouterr().out
    assert code == 0
    expected_lines = ("Progressing", "churn-v3 10 %", "p95-latency", "keep going", "advance", "0.72")
    for expected in (*expected_lines, "[-0.031, +inf]", "Evidence (always valid"):
        assert expected in out, f"{expected!r} missing from:\n{out}"


def test_status_json_is_the_object(
    local_apiserver: SuiteApiServer, k8s_api_client: kubernetes.client.ApiClient, capsys: pytest.CaptureFixture
) -> None:
    _create(k8s_api_client, "churn-v3", RUNNING)
    assert main(["status", "churn-v3", "-o", "json", "--kubeconfig", str(local_apiserver.kubeconfig)]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["status"]["weights"] == {"churn-v2": 90, "churn-v3": 10}


def test_list_shows_every_experiment(
    local_apiserver: SuiteApiServer, k8s_api_client: kubernetes.client.ApiClient, capsys: pytest.CaptureFixture
) -> None:
    _create(k8s_api_client, "first", RUNNING)
    _create(k8s_api_client, "second")
    assert main(["list", "-o", "json", "--kubeconfig", str(local_apiserver.kubeconfig)]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["first"]["phase"] == "Progressing" and rows["second"]["phase"] == "Pending"


@pytest.mark.parametrize("action", ["promote", "rollback", "pause"])
def test_manual_action_sets_the_annotation(
    action: str, local_apiserver: SuiteApiServer, k8s_api_client: kubernetes.client.ApiClient
) -> None:
    _create(k8s_api_client, "churn-v3", RUNNING)
    assert main([action, "churn-v3", "--kubeconfig", str(local_apiserver.kubeconfig)]) == 0
    assert _annotations(k8s_api_client, "churn-v3")["mlrollouts.dev/action"] == action


def test_action_on_a_finished_experiment_is_refused_and_changes_nothing(
    local_apiserver: SuiteApiServer, k8s_api_client: kubernetes.client.ApiClient, capsys: pytest.CaptureFixture
) -> None:
    _create(k8s_api_client, "done", {**RUNNING, "phase": "Promoted"})
    assert main(["rollback", "done", "--kubeconfig", str(local_apiserver.kubeconfig)]) == 1
    err = capsys.readouterr().err
    assert "already Promoted" in err and err.count("\n") == 1
    assert "mlrollouts.dev/action" not in _annotations(k8s_api_client, "done")


def test_resume_needs_a_paused_experiment(
    local_apiserver: SuiteApiServer, k8s_api_client: kubernetes.client.ApiClient, capsys: pytest.CaptureFixture
) -> None:
    _create(k8s_api_client, "churn-v3", RUNNING)
    assert main(["resume", "churn-v3", "--kubeconfig", str(local_apiserver.kubeconfig)]) == 1
    assert "not Paused" in capsys.readouterr().err


def test_missing_experiment_is_one_clear_line(local_apiserver: SuiteApiServer, capsys: pytest.CaptureFixture) -> None:
    assert main(["status", "nope", "--kubeconfig", str(local_apiserver.kubeconfig)]) == 1
    err = capsys.readouterr().err
    assert "ModelExperiment default/nope not found" in err and "Traceback" not in err


def test_unreachable_cluster_is_one_clear_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
                "users": [{"name": "u", "user": {}}],
                "current-context": "gone",
            }
        )
    )
    assert main(["list", "--kubeconfig", str(kubeconfig)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the Kubernetes API at http://127.0.0.1:9" in err and "Traceback" not in err


def test_bad_output_flag_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["status", "x", "-o", "xml"]) == 2
    assert "--output" in capsys.readouterr().err

"""The emulator driven by the real kubectl, as a user of the demo would."""

from __future__ import annotations

import json
import pathlib
import time

import pytest
import yaml

from mlrollouts.localstack.kubectl import NO_VALIDATION, Kubectl
from mlrollouts.localstack.server import LocalApiServer

EXPERIMENT_MANIFEST = pathlib.Path(__file__).parent / "data" / "experiment.yaml"

pytestmark = pytest.mark.integration


def apply_experiment(kubectl: Kubectl) -> None:
    result = kubectl.run("apply", NO_VALIDATION, "-f", str(EXPERIMENT_MANIFEST))
    assert result.returncode == 0, result.stderr
    assert "modelexperiment.mlrollouts.dev/ranker created" in result.stdout


def get_yaml(kubectl: Kubectl, name: str = "ranker") -> dict:
    result = kubectl.run("get", "mexp", name, "-o", "yaml")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_apply_then_get_shows_printer_columns(apiserver: LocalApiServer, kubectl: Kubectl) -> None:
    apply_experiment(kubectl)
    status = '{"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}'
    kubectl.run("patch", "mexp", "ranker", "--subresource", "status", "--type", "merge", "-p", status)
    table = kubectl.run("get", "mexp")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "STRATEGY", "PHASE", "AGE"]
    assert row.split()[:3] == ["ranker", "canary", "Running"]
    # By category (the metric template kinds share it, so kubectl names the kind), with the priority-1 column
    wide = kubectl.run("get", "mlrollouts", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "STRATEGY", "PHASE", "READY", "AGE"]
    assert wide[1].split()[:4] == ["modelexperiment.mlrollouts.dev/ranker", "canary", "Running", "True"]


def test_yaml_has_server_owned_metadata(apiserver: LocalApiServer, kubectl: Kubectl) -> None:
    apply_experiment(kubectl)
    metadata = get_yaml(kubectl)["metadata"]
    assert len(metadata["uid"]) == 36
    assert int(metadata["resourceVersion"]) > 0
    assert metadata["generation"] == 1
    assert metadata["creationTimestamp"].endswith("Z")


def test_spec_patch_bumps_generation_status_patch_does_not(apiserver: LocalApiServer, kubectl: Kubectl) -> None:
    apply_experiment(kubectl)
    before = get_yaml(kubectl)["metadata"]
    assert (
        kubectl.run("patch", "mexp", "ranker", "--type", "merge", "-p", '{"spec": {"strategy": "bandit"}}').returncode
        == 0
    )
    after_spec = get_yaml(kubectl)
    assert after_spec["metadata"]["generation"] == 2
    assert int(after_spec["metadata"]["resourceVersion"]) > int(before["resourceVersion"])
    status_patch = '{"status": {"phase": "Promoted"}, "spec": {"strategy": "ignored"}}'
    result = kubectl.run("patch", "mexp", "ranker", "--subresource", "status", "--type", "merge", "-p", status_patch)
    assert result.returncode == 0, result.stderr
    after_status = get_yaml(kubectl)
    assert after_status["status"] == {"phase": "Promoted"}
    assert after_status["spec"]["strategy"] == "bandit"
    assert after_status["metadata"]["generation"] == 2
    # A main-resource write cannot change status when the status subresource exists.
    kubectl.run("patch", "mexp", "ranker", "--type", "merge", "-p", '{"status": {"phase": "Hacked"}}')
    assert get_yaml(kubectl)["status"] == {"phase": "Promoted"}


def test_watch_streams_a_change(apiserver: LocalApiServer, kubectl: Kubectl) -> None:
    apply_experiment(kubectl)
    watch = kubectl.popen("get", "mexp", "-w")
    try:
        assert watch.stdout is not None
        first_lines = [watch.stdout.readline(), watch.stdout.readline()]
        assert first_lines[0].split()[:2] == ["NAME", "STRATEGY"]
        assert first_lines[1].split()[0] == "ranker"
        status = '{"status": {"phase": "RollingBack"}}'
        kubectl.run("patch", "mexp", "ranker", "--subresource", "status", "--type", "merge", "-p", status)
        deadline = time.monotonic() + 10
        changed = ""
        while time.monotonic() < deadline and "RollingBack" not in changed:
            changed = watch.stdout.readline()
        assert changed.split()[:3] == ["ranker", "canary", "RollingBack"]
    finally:
        watch.terminate()
        watch.wait(timeout=10)


def test_server_side_apply_creates_then_updates(apiserver: LocalApiServer, kubectl: Kubectl) -> None:
    manifest = EXPERIMENT_MANIFEST.read_text().replace("name: ranker", "name: ssa")
    created = kubectl.run("apply", "--server-side", NO_VALIDATION, "-f", "-", input=manifest)
    assert created.returncode == 0, created.stderr
    assert get_yaml(kubectl, "ssa")["spec"]["strategy"] == "canary"
    updated = kubectl.run(
        "apply", "--server-side", NO_VALIDATION, "-f", "-", input=manifest.replace("canary", "shadow")
    )
    assert updated.returncode == 0, updated.stderr
    assert get_yaml(kubectl, "ssa")["spec"]["strategy"] == "shadow"
    assert get_yaml(kubectl, "ssa")["metadata"]["generation"] == 2


def test_delete_and_diff_dry_run_store_nothing(apiserver: LocalApiServer, kubectl: Kubectl) -> None:
    diff = kubectl.run("diff", "-f", str(EXPERIMENT_MANIFEST))
    assert diff.returncode == 1 and "+  strategy: canary" in diff.stdout  # exit 1 = differences found
    assert kubectl.run("get", "mexp", "ranker").returncode == 1  # the server-side dry run stored nothing
    apply_experiment(kubectl)
    deleted = kubectl.run("delete", "mexp", "ranker")
    assert deleted.returncode == 0, deleted.stderr
    missing = kubectl.run("get", "mexp", "ranker")
    assert missing.returncode == 1
    assert 'modelexperiments.mlrollouts.dev "ranker" not found' in missing.stderr


def test_discovery_lists_the_crd_and_core_types(apiserver: LocalApiServer, kubectl: Kubectl) -> None:
    resources = kubectl.run("api-resources")
    assert resources.returncode == 0, resources.stderr
    rows = {line.split()[0]: line.split() for line in resources.stdout.splitlines()[1:]}
    assert rows["modelexperiments"][1:] == ["mexp", "mlrollouts.dev/v1alpha1", "true", "ModelExperiment"]
    assert rows["namespaces"][1:] == ["ns", "v1", "false", "Namespace"]
    assert rows["leases"][1:] == ["coordination.k8s.io/v1", "true", "Lease"]
    namespaces = kubectl.run("get", "ns", "-o", "json")
    assert [item["metadata"]["name"] for item in json.loads(namespaces.stdout)["items"]] == ["default"]


def test_protobuf_is_refused_with_a_clear_message(apiserver: LocalApiServer, kubectl: Kubectl) -> None:
    result = kubectl.run("create", "namespace", "team-a")
    assert result.returncode == 1
    assert "accepts JSON only, not protobuf" in result.stderr
    manifest = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n"
    assert kubectl.run("apply", NO_VALIDATION, "-f", "-", input=manifest).returncode == 0
    assert "team-a" in kubectl.run("get", "ns").stdout

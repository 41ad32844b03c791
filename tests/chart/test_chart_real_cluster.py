"""`helm install` of charts/mlrollouts into the real kube-apiserver, and the operator as the chart's ServiceAccount.

The operator runs out of cluster (the API server runs no pods) with the arguments of the chart's Deployment and a
token the TokenRequest API issued for the chart's ServiceAccount, so the chart's RBAC authorises every request:
a complete canary, a manual action and a deletion must cost zero 403s (counted in the API server's audit log),
and a rule taken out of the ClusterRole must surface as reason Forbidden naming the permission.
Skipped, with the reason, where `make controlplane` has not built kube-apiserver, etcd and helm.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml
from cluster_support import (
    RELEASE_NAMESPACE,
    ChartOperator,
    Helm,
    audit_args,
    audit_events,
    describe,
    operator_args,
    operator_env,
    service_account_kubeconfig,
)

from controller.stack import Stack, canary_manifest, virtual_service_manifest
from mlrollouts.localstack import binaries
from mlrollouts.localstack.realcluster import DEFAULT_CRDS, PROJECT_CRD, RealApiServer

HELM_MISSING = not binaries.available() or not binaries.path("helm").exists()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(HELM_MISSING, reason=f"{binaries.unavailable_reason()} (helm too)"),
]
RELEASE = "rel"
SERVICE_ACCOUNT = f"{RELEASE}-mlrollouts"
USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:{SERVICE_ACCOUNT}"
VARIANTS = ["churn-v2", "churn-v3"]
CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "mlrollouts"
EXPERIMENTS = ("mlrollouts.dev", "v1alpha1", "default", "modelexperiments")


class Cluster:
    """The real API server (audited), the admin's helm, and the end-to-end stack's Prometheus and models."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        # The ModelExperiment CRD is left to the chart's crds/: helm installs it, as on a fresh cluster.
        self.server = RealApiServer(
            kubeconfig_path=folder / "kubeconfig",
            builtin_crds=[c for c in DEFAULT_CRDS if c != PROJECT_CRD],
            extra_args=audit_args(folder),
        ).start()
        assert self.server.kubeconfig is not None
        self.helm = Helm(self.server.kubeconfig, folder / "helm")
        self.stack: Stack | None = None

    def install(self, *values: str, chart: pathlib.Path = CHART) -> float:
        """`helm install` (the values as --set flags); returns its duration in seconds."""
        began = time.monotonic()
        sets = [arg for value in values for arg in ("--set", value)]
        self.helm.run("install", RELEASE, str(chart), "--namespace", RELEASE_NAMESPACE, "--create-namespace", *sets)
        return time.monotonic() - began

    def start_stack(self) -> Stack:
        if self.stack is None:
            self.stack = Stack(self.server, self.folder, VARIANTS)  # type: ignore[arg-type]
        return self.stack

    @contextlib.contextmanager
    def operator(self, log: pathlib.Path) -> Iterator[ChartOperator]:
        """The chart's Deployment's command, run here with the ServiceAccount's token."""
        kubeconfig = service_account_kubeconfig(self.server, SERVICE_ACCOUNT, log.with_suffix(".kubeconfig"))
        manifest = self.helm.manifest(RELEASE)
        process = ChartOperator(kubeconfig, log, operator_args(manifest), operator_env(manifest)).start()
        stack = self.start_stack()
        stack.operator = process
        try:
            yield process
        finally:
            if stack.follower:
                stack.follower.stopping.set()
                stack.follower.join(2)
                stack.follower = None
            process.stop()

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()
        self.server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("helm-real"))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def uninstall_after(cluster: Cluster) -> Iterator[None]:
    try:
        yield
    finally:
        releases = cluster.helm.run("list", "--namespace", RELEASE_NAMESPACE, "-q").stdout.split()
        if RELEASE in releases:
            cluster.helm.run("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait")


def _route(stack: Stack, name: str) -> dict[str, int]:
    route = next(r for r in stack.virtual_service(name)["spec"]["http"] if r.get("name") == "predict")
    return {d["destination"]["host"]: d.get("weight", 0) for d in route["route"]}


def _experiment(stack: Stack, name: str, steps: list[int], step_duration: str = "2s") -> dict[str, Any]:
    """A canary on its own VirtualService (named after it), created with the admin's credentials."""
    stack.objects.create_namespaced_custom_object(
        "networking.istio.io", "v1", "default", "virtualservices", virtual_service_manifest(name, *VARIANTS)
    )
    manifest = canary_manifest(name, stack.prometheus.address, steps=steps)
    manifest["spec"]["traffic"]["istio"]["virtualService"] = name
    manifest["spec"]["canary"]["stepDuration"] = step_duration
    return stack.create(manifest)


def _follow(stack: Stack, name: str) -> None:
    if stack.follower:
        stack.follower.stopping.set()
        stack.follower.join(2)
    stack.follow_traffic(name)


def _delete(stack: Stack, name: str) -> None:
    """Delete the experiment and wait until the operator's finalizer let it go."""
    stack.objects.delete_namespaced_custom_object(*EXPERIMENTS, name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        names = [i["metadata"]["name"] for i in stack.objects.list_namespaced_custom_object(*EXPERIMENTS)["items"]]
        if name not in names:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} still there 30 s after its deletion:\n{stack.operator.log()[-3000:]}")


def _a_canary_a_manual_action_and_a_deletion(stack: Stack, prefix: str) -> None:
    """What an operator does in a day, every request authorised by the chart's RBAC."""
    promoted, manual, deleted = f"{prefix}-promote", f"{prefix}-manual", f"{prefix}-delete"
    stack.exporter.control("churn-v2", success=0.72)
    stack.exporter.control("churn-v3", success=0.78)
    _experiment(stack, promoted, [20, 50, 100])
    _follow(stack, promoted)
    status = stack.wait_for(promoted, lambda s: s.get("phase") == "Promoted", 120, "Promoted")
    assert status["history"][-1]["action"] == "promoted"
    assert _route(stack, promoted) == {"churn-v2": 0, "churn-v3": 100}
    _delete(stack, promoted)

    _experiment(stack, manual, [30, 100], step_duration="10m")
    _follow(stack, manual)
    stack.wait_for(manual, lambda s: s.get("weights", {}).get("churn-v3") == 30, 30, "first step")
    stack.objects.patch_namespaced_custom_object(
        *EXPERIMENTS, manual, {"metadata": {"annotations": {"mlrollouts.dev/action": "rollback"}}}
    )
    status = stack.wait_for(manual, lambda s: s.get("phase") == "RolledBack", 30, "RolledBack by hand")
    assert status["reason"] == "ManualRollback"
    assert _route(stack, manual) == {"churn-v2": 100, "churn-v3": 0}
    deadline = time.monotonic() + 10  # removed right after the status write that records the action
    while "mlrollouts.dev/action" in (stack.get(manual)["metadata"].get("annotations") or {}):
        assert time.monotonic() < deadline, "the handled action annotation was not removed"
        time.sleep(0.2)
    _delete(stack, manual)

    _experiment(stack, deleted, [30, 100], step_duration="10m")
    _follow(stack, deleted)
    stack.wait_for(deleted, lambda s: s.get("weights", {}).get("churn-v3") == 30, 30, "first step")
    _delete(stack, deleted)
    assert _route(stack, deleted) == {"churn-v2": 100, "churn-v3": 0}, "deletion gives the champion its traffic"


def _assert_no_forbidden(cluster: Cluster) -> list[dict[str, Any]]:
    events = audit_events(cluster.folder, USER)
    forbidden = [describe(e) for e in events if e["responseStatus"]["code"] == 403]
    assert forbidden == [], f"{len(forbidden)} requests of the ServiceAccount were forbidden: {forbidden[:20]}"
    return events


def _did_the_work(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (e["verb"], f"{e['objectRef'].get('resource')}/{e['objectRef'].get('subresource') or ''}".rstrip("/"))
        for e in events
        if e["responseStatus"]["code"] < 300 and e.get("objectRef")
    }


def test_default_install_runs_a_canary_an_action_and_a_deletion_with_zero_403s(
    cluster: Cluster, uninstall_after: None, tmp_path: pathlib.Path
) -> None:
    seconds = cluster.install()
    print(f"helm install (defaults) took {seconds:.1f} s")
    with cluster.operator(tmp_path / "operator.log") as operator:
        assert "--all-namespaces" in operator.args
        _a_canary_a_manual_action_and_a_deletion(cluster.start_stack(), "cluster")
    events = _assert_no_forbidden(cluster)
    print(f"the ServiceAccount's requests: {len(events)}, forbidden: 0")
    work = _did_the_work(events)
    # The ServiceAccount, not the admin, moved the traffic and wrote the status.
    assert work & {("patch", "virtualservices"), ("update", "virtualservices")}, sorted(work)
    assert ("patch", "modelexperiments/status") in work, sorted(work)


def test_watch_namespaces_install_runs_the_same_day_with_zero_403s(
    cluster: Cluster, uninstall_after: None, tmp_path: pathlib.Path
) -> None:
    with cluster.server.client() as http:
        response = http.post("/api/v1/namespaces", json={"metadata": {"name": "ml-other"}})
        assert response.status_code in (201, 409), response.text
    seconds = cluster.install("watchNamespaces={default,ml-other}")
    print(f"helm install (watchNamespaces) took {seconds:.1f} s")
    manifest = cluster.helm.manifest(RELEASE)
    assert "Role" in {o["kind"] for o in manifest}
    # Namespaced mode's one ClusterRole reads the cluster-scoped metric templates, nothing else
    cluster_rules = [r for o in manifest if o["kind"] == "ClusterRole" for r in o["rules"]]
    assert {(res, verb) for r in cluster_rules for res in r["resources"] for verb in r["verbs"]} == {
        ("clustermetrictemplates", verb) for verb in ("get", "list", "watch")
    }
    before = len(audit_events(cluster.folder, USER))
    with cluster.operator(tmp_path / "operator.log") as operator:
        assert "--namespace=default" in operator.args and "--namespace=ml-other" in operator.args
        _a_canary_a_manual_action_and_a_deletion(cluster.start_stack(), "namespaced")
    events = _assert_no_forbidden(cluster)
    print(f"the ServiceAccount's requests: {len(events) - before}, forbidden: 0")
    assert len(events) > before


def test_a_rule_missing_from_the_cluster_role_is_reported_as_forbidden_naming_it(
    cluster: Cluster, uninstall_after: None, tmp_path: pathlib.Path
) -> None:
    cluster.install()
    role = next(o for o in cluster.helm.manifest(RELEASE) if o["kind"] == "ClusterRole")
    kept = [r for r in role["rules"] if "networking.istio.io" not in r["apiGroups"]]
    assert len(kept) == len(role["rules"]) - 1
    api = kubernetes.client.RbacAuthorizationV1Api(cluster.start_stack().api)
    api.patch_cluster_role(role["metadata"]["name"], {"rules": kept})
    stack = cluster.start_stack()
    with cluster.operator(tmp_path / "operator.log"):
        _experiment(stack, "no-rbac", [30, 100])
        status = stack.wait_for("no-rbac", lambda s: s.get("reason") == "Forbidden", 30, "reason Forbidden")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (status["phase"], ready["status"], ready["reason"]) == ("Pending", "False", "Forbidden")
        assert 'cannot get resource "virtualservices" in API group "networking.istio.io"' in ready["message"]
        assert _route(stack, "no-rbac") == {"churn-v2": 100}, "no traffic moved"
        api.patch_cluster_role(role["metadata"]["name"], {"rules": role["rules"]})  # the rule back: it proceeds
        stack.wait_for("no-rbac", lambda s: s.get("weights", {}).get("churn-v3") == 30, 30, "first step after the fix")
        _delete(stack, "no-rbac")


def test_upgrade_leaves_the_crd_alone_and_uninstall_keeps_crd_and_experiments(
    cluster: Cluster, uninstall_after: None, tmp_path: pathlib.Path
) -> None:
    """Helm installs crds/ once and never upgrades or deletes them (the README says what to do instead)."""
    cluster.install()
    extensions = kubernetes.client.ApiextensionsV1Api(cluster.start_stack().api)
    crd = extensions.read_custom_resource_definition("modelexperiments.mlrollouts.dev")
    changed = tmp_path / "chart"
    shutil.copytree(CHART, changed)
    crd_file = changed / "crds" / "modelexperiments.mlrollouts.dev.yaml"
    document = yaml.safe_load(crd_file.read_text())
    document["metadata"].setdefault("labels", {})["upgraded"] = "yes"
    crd_file.write_text(yaml.safe_dump(document))
    cluster.helm.run("upgrade", RELEASE, str(changed), "--namespace", RELEASE_NAMESPACE, "--set", "replicaCount=1")
    assert "REVISION: 2" in cluster.helm.run("status", RELEASE, "--namespace", RELEASE_NAMESPACE).stdout
    after = extensions.read_custom_resource_definition("modelexperiments.mlrollouts.dev")
    assert after.metadata.resource_version == crd.metadata.resource_version
    assert "upgraded" not in (after.metadata.labels or {}), "helm upgrade changed the CRD"
    deployment = next(o for o in cluster.helm.manifest(RELEASE) if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1

    stack = cluster.start_stack()
    _experiment(stack, "survivor", [30, 100])
    token = service_account_kubeconfig(cluster.server, SERVICE_ACCOUNT, tmp_path / "sa.kubeconfig")
    cluster.helm.run("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait")
    assert extensions.read_custom_resource_definition("modelexperiments.mlrollouts.dev").metadata.name
    assert stack.get("survivor")["metadata"]["name"] == "survivor", "uninstall deleted an experiment"
    rbac = kubernetes.client.RbacAuthorizationV1Api(stack.api)
    assert [r for r in rbac.list_cluster_role().items if r.metadata.name == SERVICE_ACCOUNT] == []
    client = kubernetes.config.new_client_from_config(config_file=str(token))
    with client, pytest.raises(kubernetes.client.ApiException) as refused:
        kubernetes.client.CoreV1Api(client).list_namespaced_pod(RELEASE_NAMESPACE)
    assert refused.value.status == 401, "the ServiceAccount's token must die with the release"
    stack.objects.delete_namespaced_custom_object(*EXPERIMENTS, "survivor")

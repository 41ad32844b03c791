"""The built-in gateway's view of the experiment (kube_source.WatchSplitSource) against `routing_cluster`.

One list and one watch carry every status change (the gateway used to GET once a second); client
certificates, an exec credential plugin and the in-cluster service-account token all authenticate it; the
chart's gateway Role (get/list/watch on one experiment by name) is enough on a server that enforces RBAC.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml
from routing_objects import NAMESPACE, RoutingCluster

from mlrollouts.gateway.kube_source import GROUP, PLURAL, VERSION, WatchSplitSource, client_configuration
from mlrollouts.gateway.split import SplitError, SplitState
from mlrollouts.gateway.split_source import follow
from mlrollouts.localstack.server import run_apiserver

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo-shadow.yaml"
NAME, VARIANTS, CHAMPION = "churn-v3-shadow", ("churn-v2", "churn-v3"), "churn-v2"
ACCOUNT = "mlrollouts-gateway"
EVENT_WAIT_S = 30.0  # a hang guard for awaiting the next event, not a speed target


def experiment_document() -> dict:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"] = {"name": NAME, "namespace": NAMESPACE}
    return document


@pytest.fixture
def custom(kube_api: kubernetes.client.ApiClient) -> Iterator[kubernetes.client.CustomObjectsApi]:
    api = kubernetes.client.CustomObjectsApi(kube_api)
    api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, experiment_document())
    try:
        yield api
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            api.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)


def set_weights(custom: kubernetes.client.CustomObjectsApi, challenger: int) -> None:
    status = {"phase": "Progressing", "weights": {"churn-v2": 100 - challenger, "churn-v3": challenger}}
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, NAME, {"status": status})


async def next_split(source: WatchSplitSource) -> SplitState | None:
    return await asyncio.wait_for(source.poll(), EVENT_WAIT_S)


def source_for(kubeconfig: Path | None, experiment: str = NAME) -> WatchSplitSource:
    return WatchSplitSource(client_configuration(kubeconfig), NAMESPACE, experiment, VARIANTS, CHAMPION)


async def test_every_status_change_arrives_through_one_list_and_one_watch(
    routing_cluster: RoutingCluster, custom: kubernetes.client.CustomObjectsApi
) -> None:
    source = source_for(routing_cluster.kubeconfig)  # the admin kubeconfig: client certificates on the real server
    try:
        first = await next_split(source)
        assert first is not None and first.weights == {"churn-v2": 100.0, "churn-v3": 0.0}
        for challenger in (5, 25, 50):
            set_weights(custom, challenger)
            state = await next_split(source)
            assert state is not None and state.weights["churn-v3"] == challenger
        # a change that leaves the split alone (a label) is an event, but not a new split
        labelled = {"metadata": {"labels": {"team": "ml"}}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME, labelled)
        assert await next_split(source) is None
        assert source.requests == {"list": 1, "watch": 1}  # polling once a second would have made ~N GETs
        custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
        with pytest.raises(SplitError, match=f"ModelExperiment {NAMESPACE}/{NAME} not found"):
            await next_split(source)
    finally:
        await source.close()


async def test_an_expired_watch_lists_again(
    routing_cluster: RoutingCluster, custom: kubernetes.client.CustomObjectsApi
) -> None:
    """410 Gone (the version left etcd's window, e.g. after an API server restart): list again, at once."""

    class ExpiresOnce(WatchSplitSource):
        expired = False

        def _follow(self, version: str, emit: object) -> str:
            if not self.expired:
                self.expired = True
                raise kubernetes.client.ApiException(status=410, reason="Expired")
            return super()._follow(version, emit)

    source = ExpiresOnce(client_configuration(routing_cluster.kubeconfig), NAMESPACE, NAME, VARIANTS, CHAMPION)
    try:
        assert await next_split(source) is not None
        assert await next_split(source) is None  # the re-list: same split, nothing new to apply
        set_weights(custom, 10)
        state = await next_split(source)
        assert state is not None and state.weights["churn-v3"] == 10
        assert source.requests == {"list": 2, "watch": 1}  # the expired watch is the stub's, not a request
    finally:
        await source.close()


async def test_an_unreachable_api_keeps_the_last_weights(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The API server goes away mid-watch: a warning, backoff, and the gateway keeps serving the last split."""
    server = run_apiserver(0, tmp_path / "kubeconfig")  # our own server, so that this test can stop it
    try:
        server.ensure_namespace(NAMESPACE)
        api = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
        kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, experiment_document()
        )
        set_weights(kubernetes.client.CustomObjectsApi(api), 30)
        api.close()
        # short watches: the emulator's graceful stop waits for open watches to end
        source = WatchSplitSource(client_configuration(server.kubeconfig), NAMESPACE, NAME, VARIANTS, CHAMPION, 2)
        applied: list[SplitState] = []
        task = asyncio.create_task(follow(source, applied.append))
        with caplog.at_level(logging.WARNING, logger="mlrollouts.gateway.split_source"):
            while not applied:
                await asyncio.sleep(0.05)
            server.stop()
            while "split rejected" not in caplog.text:
                await asyncio.sleep(0.05)
        assert [state.weights["churn-v3"] for state in applied] == [30]
        assert "cannot reach the API server" in caplog.text
        task.cancel()
        await source.close()
    finally:
        server.stop()


def write_kubeconfig(path: Path, admin: Path, user: dict) -> Path:
    """The admin kubeconfig's cluster (server, CA) with another user."""
    config = yaml.safe_load(admin.read_text())
    config["users"] = [{"name": "gateway", "user": user}]
    config["contexts"][0]["context"]["user"] = "gateway"
    path.write_text(yaml.safe_dump(config))
    return path


def service_account_token(kube_api: kubernetes.client.ApiClient) -> str:
    """A TokenRequest token for the gateway's ServiceAccount, bound by the chart's gateway Role."""
    core, rbac = kubernetes.client.CoreV1Api(kube_api), kubernetes.client.RbacAuthorizationV1Api(kube_api)
    with contextlib.suppress(kubernetes.client.ApiException):  # already there from an earlier test
        core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": ACCOUNT}})
        # charts/mlrollouts/templates/gateway.yaml (tests/chart/test_chart_render.py pins the same rule)
        rule = {"apiGroups": [GROUP], "resources": [PLURAL], "resourceNames": [NAME], "verbs": ["get", "list", "watch"]}
        rbac.create_namespaced_role(NAMESPACE, {"metadata": {"name": ACCOUNT}, "rules": [rule]})
        binding = {
            "metadata": {"name": ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
        }
        rbac.create_namespaced_role_binding(NAMESPACE, binding)
    request = core.create_namespaced_service_account_token(ACCOUNT, NAMESPACE, {"spec": {"expirationSeconds": 3600}})
    return request.status.token


async def test_an_exec_plugin_authenticates_as_the_gateway_service_account(
    routing_cluster: RoutingCluster,
    custom: kubernetes.client.CustomObjectsApi,
    kube_api: kubernetes.client.ApiClient,
    tmp_path: Path,
) -> None:
    if not routing_cluster.real:
        pytest.skip("the emulator authenticates nobody and enforces no RBAC")
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}
    credential["status"] = {"token": service_account_token(kube_api)}
    plugin = tmp_path / "credential.py"
    plugin.write_text(f"import json\nprint(json.dumps({json.dumps(credential)}))\n")
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
        }
    }
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", routing_cluster.kubeconfig, exec_user)
    source = source_for(kubeconfig)
    try:
        set_weights(custom, 20)
        state = await next_split(source)
        assert state is not None and state.weights["churn-v3"] == 20
    finally:
        await source.close()
    other = source_for(kubeconfig, experiment="someone-elses")  # not in the Role's resourceNames
    try:
        with pytest.raises(SplitError, match="HTTP 403"):
            await next_split(other)
    finally:
        await other.close()


async def test_in_cluster_config_uses_the_mounted_service_account_token(
    routing_cluster: RoutingCluster,
    custom: kubernetes.client.CustomObjectsApi,
    kube_api: kubernetes.client.ApiClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not routing_cluster.real:
        pytest.skip("in-cluster config needs HTTPS and a CA, which the emulator does not serve")
    admin = yaml.safe_load(routing_cluster.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    (tmp_path / "token").write_text(service_account_token(kube_api))
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    host, port = cluster["server"].removeprefix("https://").rsplit(":", 1)
    incluster = kubernetes.config.incluster_config
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    source = source_for(None)
    try:
        set_weights(custom, 40)
        state = await next_split(source)
        assert state is not None and state.weights["churn-v3"] == 40
    finally:
        await source.close()


def test_missing_credentials_are_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SplitError, match="give --kubeconfig or --split-file"):
        client_configuration(None)
    broken = tmp_path / "kubeconfig"
    broken.write_text(yaml.safe_dump({"current-context": "nowhere", "contexts": [], "clusters": [], "users": []}))
    with pytest.raises(SplitError, match="cannot load Kubernetes credentials"):
        client_configuration(broken)

"""What users and other tools see of the running operator: kubectl (apply, printer columns, watch), its
metrics endpoint, manual actions through the CLI, a bearer token from a Secret, and kopf peering for HA.
"""

from __future__ import annotations

import base64
import contextlib
import pathlib
import time
from collections.abc import Iterator

import kubernetes
import pytest
import yaml
from stack import GROUP, PLURAL, VERSION, Stack, canary_manifest, virtual_service_manifest
from surface_support import LineReader, PeeringOperator, column, scrape, ticks

from bearer_proxy import bearer_proxy
from mlrollouts.cli.main import main
from mlrollouts.localstack.kubectl import NO_VALIDATION, Kubectl

pytestmark = pytest.mark.integration
REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
PRINTER_COLUMNS = ["NAME", "STRATEGY", "PHASE", "REASON", "WEIGHT", "DECISION", "P", "P(BETTER)", "AGE"]
ACTION_ANNOTATION = "mlrollouts.dev/action"


def gateway_canary(name: str, prometheus: str, **overrides: object) -> dict:
    """A canary through the built-in gateway: no routing object, so experiments never conflict."""
    return canary_manifest(name, prometheus, traffic={"provider": "gateway"}, **overrides)


def delete_experiments(stack: Stack, *names: str) -> None:
    for name in names:
        with contextlib.suppress(kubernetes.client.ApiException):
            stack.objects.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        items = stack.objects.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"]
        if not {i["metadata"]["name"] for i in items} & set(names):
            return
        time.sleep(0.2)


def kubectl_for(stack: Stack, tmp_path: pathlib.Path) -> Kubectl:
    return Kubectl(stack.apiserver.kubeconfig, tmp_path / "kubectl-cache")


def test_examples_apply_and_show_printer_columns_and_phase(stack: Stack, tmp_path: pathlib.Path) -> None:
    kubectl = kubectl_for(stack, tmp_path)
    manifests = [yaml.safe_load(path.read_text()) for path in EXAMPLES]
    for namespace in {m["metadata"]["namespace"] for m in manifests}:
        stack.apiserver.ensure_namespace(namespace)
    # kubectl's default (server-side) validation on the real server; the emulator serves no OpenAPI for it.
    validation = [] if stack.apiserver.backend == "real" else [NO_VALIDATION]
    for path in EXAMPLES:
        applied = kubectl.run("apply", "-f", str(path), *validation)
        assert applied.returncode == 0, f"{path.name}: {applied.stderr}"
    watched = sorted(m["metadata"]["name"] for m in manifests if m["metadata"]["namespace"] == "default")
    try:
        listing = kubectl.run("get", "mexp", "-A")
        assert listing.returncode == 0, listing.stderr
        header, *rows = listing.stdout.splitlines()
        assert header.split() == ["NAMESPACE", *PRINTER_COLUMNS]
        assert sorted(row.split()[1] for row in rows) == sorted(m["metadata"]["name"] for m in manifests)

        deadline, phases = time.monotonic() + 15, {}
        while time.monotonic() < deadline:
            header, *rows = kubectl.run("get", "mexp", "-n", "default").stdout.splitlines()
            phases = {row.split()[0]: column(header, row, "PHASE") for row in rows}
            if all(phases.get(name) for name in watched):
                break
            time.sleep(0.3)
        assert watched and all(phases.get(name) for name in watched), f"no phase shown after ticks: {phases}"
    finally:
        for path in EXAMPLES:
            kubectl.run("delete", "-f", str(path), "--wait=false")
        delete_experiments(stack, *watched)


def test_get_watch_streams_the_phase_change(stack: Stack, tmp_path: pathlib.Path) -> None:
    kubectl = kubectl_for(stack, tmp_path)
    child = kubectl.popen("get", "mexp", "-n", "default", "-w")
    reader = LineReader(child)
    reader.start()
    try:
        time.sleep(1)  # kubectl lists (nothing yet) and opens its watch
        stack.create(gateway_canary("watched", stack.prometheus.address))
        header = reader.wait_for(lambda line: line.startswith("NAME"), 10)
        assert header.split() == PRINTER_COLUMNS
        first = reader.wait_for(lambda line: line.startswith("watched "), 10)
        assert "Progressing" not in first, "the new object is streamed before any tick"
        changed = reader.wait_for(lambda line: line.startswith("watched ") and "Progressing" in line, 15)
        _name, strategy, phase, _reason, weight, *_ = changed.split()  # watch lines are not aligned to the header
        assert (strategy, phase, weight) == ("canary", "Progressing", "churn-v3=20%")
    finally:
        child.terminate()
        child.wait(5)
        delete_experiments(stack, "watched")


def test_metrics_endpoint_exposes_phases_weights_decisions_durations_and_query_errors(stack: Stack) -> None:
    stack.create(gateway_canary("metered", stack.prometheus.address))
    stack.create(gateway_canary("unreachable", "http://127.0.0.1:9"))  # nothing listens there
    try:
        stack.wait_for("metered", lambda s: s.get("weights", {}).get("churn-v3") == 20, 15, "first step")
        stack.wait_for("unreachable", lambda s: s.get("metricsFailures", 0) >= 1, 15, "a failed query")
        time.sleep(1.5)  # the gauges are refreshed after the status write
        samples = scrape(stack.operator.metrics_port)

        def values(metric: str, **labels: str) -> list[float]:
            return [v for n, lab, v in samples if n == metric and labels.items() <= lab.items()]

        assert sum(values("mlrollouts_experiments", phase="Progressing")) >= 1
        weights = {lab["variant"]: v for n, lab, v in samples if n == "mlrollouts_challenger_weight"}
        assert values("mlrollouts_challenger_weight", experiment="metered", variant="churn-v3") == [20]
        assert "churn-v2" not in weights, "the champion has no weight series (the alerts rely on that)"
        actions = {lab["action"] for n, lab, _ in samples if n == "mlrollouts_decisions_total"}
        assert actions and actions <= {"continue", "advance", "promote", "rollback", "pause", "hold"}
        count = sum(values("mlrollouts_reconcile_duration_seconds_count"))
        assert count >= 2 and sum(values("mlrollouts_reconcile_duration_seconds_bucket", le="+Inf")) == count
        assert sum(values("mlrollouts_reconcile_duration_seconds_sum")) > 0
        assert sum(values("mlrollouts_prometheus_query_errors_total", experiment="unreachable")) >= 1
    finally:
        delete_experiments(stack, "metered", "unreachable")


def _history_actions(stack: Stack, name: str) -> list[str]:
    return [entry["action"] for entry in stack.status(name).get("history", [])]


def _request(stack: Stack, action: str, name: str, phase: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Run `mlrollouts ACTION NAME` and wait until the operator reached `phase` (a failure budget, not a target:
    how fast the action applies is measured in `make bench`, not asserted on a shared machine)."""
    assert main([action, name, "--kubeconfig", str(stack.apiserver.kubeconfig), "--namespace", "default"]) == 0
    assert f"{action} requested for default/{name}" in capsys.readouterr().out
    stack.wait_for(name, lambda s: s.get("phase") == phase, 30, f"{action} -> {phase}")


def test_manual_pause_resume_rollback_through_the_cli(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.create(gateway_canary("manual", stack.prometheus.address, steps=[20, 100]))
    try:
        stack.wait_for("manual", lambda s: s.get("phase") == "Progressing", 15, "Progressing")
        for action, phase in (("pause", "Paused"), ("resume", "Progressing"), ("rollback", "RolledBack")):
            _request(stack, action, "manual", phase, capsys)
            # Removed by a second write right after the status one (the status subresource cannot carry it).
            stack.wait_for(
                "manual",
                lambda _: ACTION_ANNOTATION not in (stack.get("manual")["metadata"].get("annotations") or {}),
                5,
                "the handled request to be removed",
            )
        manual = [a for a in _history_actions(stack, "manual") if a in ("pause", "resume", "rolledBack")]
        assert manual == ["pause", "resume", "rolledBack"], "each action took effect and is recorded once"
        assert stack.status("manual")["weights"] == {"churn-v2": 100, "churn-v3": 0}
    finally:
        delete_experiments(stack, "manual")


def _event_reasons(stack: Stack, name: str) -> dict[str, str]:
    events = kubernetes.client.CoreV1Api(stack.api).list_namespaced_event("default").items
    return {e.reason: e.message for e in events if e.involved_object.name == name}


def test_a_manual_action_on_a_pending_experiment_is_never_dropped_silently(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.create(gateway_canary("waiting", "http://127.0.0.1:9"))  # nothing listens there: Pending
    try:
        stack.wait_for("waiting", lambda s: s.get("reason") == "MetricsUnavailable", 15, "Pending, MetricsUnavailable")
        assert (
            main(["pause", "waiting", "--kubeconfig", str(stack.apiserver.kubeconfig), "--namespace", "default"]) == 0
        )
        deadline = time.monotonic() + 30
        while "ManualActionIgnored" not in _event_reasons(stack, "waiting"):
            assert time.monotonic() < deadline, f"no Event for the pause: {_event_reasons(stack, 'waiting')}"
            time.sleep(0.2)
        assert (
            "pause not applied: the experiment has not started"
            in _event_reasons(stack, "waiting")["ManualActionIgnored"]
        )
        stack.wait_for(
            "waiting",
            lambda s: ACTION_ANNOTATION not in (stack.get("waiting")["metadata"].get("annotations") or {}),
            15,
            "the pause request removed",
        )
        assert stack.status("waiting")["phase"] == "Pending"
        _request(stack, "rollback", "waiting", "RolledBack", capsys)  # the one action that applies: end it
        assert stack.status("waiting")["weights"] == {"churn-v2": 100, "churn-v3": 0}
    finally:
        delete_experiments(stack, "waiting")


def test_bearer_token_from_a_secret_reaches_prometheus_and_a_secret_off_the_allow_list_is_invalid(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = kubernetes.client.CoreV1Api(stack.api)
    token = "s3cret-token"
    secret = {"metadata": {"name": "prom-token"}, "data": {"token": base64.b64encode(token.encode()).decode()}}
    core.create_namespaced_secret("default", secret)
    reference = {"name": "prom-token", "key": "token"}
    try:
        with bearer_proxy(stack.prometheus.address, token) as (url, seen):
            # The platform's settings, as the chart passes them: the proxy may get credentials, and these Secrets.
            monkeypatch.setenv("MLROLLOUTS_PROMETHEUS_ALLOWED_ADDRESSES", f"{url},{stack.prometheus.address}")
            monkeypatch.setenv("MLROLLOUTS_PROMETHEUS_SECRET_NAMES", "prom-token,absent")
            stack.operator.stop()
            stack.operator.start()
            prometheus = {"address": url, "timeout": "2s", "bearerTokenSecretRef": reference}
            manifest = gateway_canary("tokened", url)
            manifest["spec"]["analysis"]["prometheus"] = prometheus
            stack.create(manifest)
            stack.follow_traffic("tokened")
            status = stack.wait_for(
                "tokened",
                lambda s: (s.get("samples", {}).get("churn-v2", {}).get("trials") or 0) > 0,
                20,
                "samples read through the token-checking proxy",
            )
            assert status["metricsFailures"] == 0
            assert seen.requests and {r["authorization"] for r in seen.requests} == {f"Bearer {token}"}
        # A Secret the platform did not list is refused whether or not it exists (a missing listed one waits
        # Pending: test_operator_failures_end_to_end), and nothing is read or sent.
        forbidden = gateway_canary("off-list", stack.prometheus.address)
        forbidden["spec"]["analysis"]["prometheus"]["bearerTokenSecretRef"] = {"name": "other-team", "key": "token"}
        stack.create(forbidden)
        status = stack.wait_for("off-list", lambda s: s.get("phase") == "Invalid", 60, "Invalid")
        assert "spec.analysis.prometheus.bearerTokenSecretRef" in status["message"]
        assert "other-team" in status["message"]
    finally:
        delete_experiments(stack, "tokened", "off-list")
        core.delete_namespaced_secret("prom-token", "default")


def test_a_graceful_stop_closes_the_operators_http_sessions(stack: Stack) -> None:
    """SIGTERM (a rollout of the operator's Deployment) must not end with asyncio's "Unclosed client session":
    the Prometheus sessions are closed with the rest, so the last log lines of a pod are about the pod."""
    stack.create(gateway_canary("closes", stack.prometheus.address))
    try:
        stack.follow_traffic("closes")
        stack.wait_for(
            "closes",
            lambda s: (s.get("samples", {}).get("churn-v2", {}).get("trials") or 0) > 0,
            60,
            "samples read from Prometheus (its session open)",
        )
        before = len(stack.operator.log())
        stack.operator.stop()
        tail = stack.operator.log()[before:]
        assert stack.operator.process is not None and stack.operator.process.returncode == 0, tail[-2000:]
        assert "Unclosed client session" not in tail and "Unclosed connector" not in tail, tail[-2000:]
        assert "is cancelled" not in tail and "did not exit in time" not in tail, "a daemon was not stopped cleanly"
    finally:
        stack.operator.start()
        delete_experiments(stack, "closes")


def _peering_objects(stack: Stack) -> None:
    """kopf's peering CRDs and the object the replicas share (namespaced, as the operator watches `default`)."""
    stack.apiserver.install_crd_files([REPO / "charts" / "mlrollouts" / "crds" / "kopf-peering.yaml"])
    body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": "mlrollouts"}}
    # Fresh objects per test: replicas of an earlier test of this module may have left entries behind.
    with contextlib.suppress(kubernetes.client.ApiException):
        stack.objects.delete_namespaced_custom_object("kopf.dev", "v1", "default", "kopfpeerings", "mlrollouts")
    with contextlib.suppress(kubernetes.client.ApiException):
        stack.objects.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "mlrollouts")
    stack.objects.create_namespaced_custom_object(
        "kopf.dev", "v1", "default", "kopfpeerings", {**body, "kind": "KopfPeering"}
    )
    cluster = {**body, "kind": "ClusterKopfPeering"}
    stack.objects.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", cluster)


def _no_step_twice(status: dict) -> None:
    """Every step is recorded once in history: a second replica acting on a stale read did not repeat one."""
    entries = [(h["action"], h.get("to")) for h in status.get("history", [])]
    assert entries.count(("start", "Progressing")) <= 1 and len(set(entries)) == len(entries), entries


def _routes_match_status(stack: Stack, name: str) -> None:
    """The VirtualService carries exactly the weights status says (read once the experiment is at rest)."""
    status = stack.status(name)
    route = next(r for r in stack.virtual_service("churn")["spec"]["http"] if r.get("name") == "predict")
    routed = {d["destination"]["host"]: d.get("weight", 100) for d in route["route"]}
    assert {variant: routed.get(variant, 0) for variant in status["weights"]} == status["weights"], (routed, status)


def _peering_lines(replica: PeeringOperator) -> list[str]:
    return [line for line in replica.log().splitlines() if "kopf._core.engines.peering" in line] or [""]


@contextlib.contextmanager
def _two_replicas(
    stack: Stack, tmp_path: pathlib.Path, experiment: str, *, istio: bool = False
) -> Iterator[list[PeeringOperator]]:
    """Two peered operator replicas running one canary `experiment` with traffic (through the built-in gateway,
    or a VirtualService `churn` with `istio`); all undone after."""
    _peering_objects(stack)
    if istio:
        stack.objects.create_namespaced_custom_object(
            "networking.istio.io",
            "v1",
            "default",
            "virtualservices",
            virtual_service_manifest("churn", "churn-v2", "churn-v3"),
        )
    stack.exporter.control("churn-v2", rate=0, success=0.72, latency=0.05, error_rate=0.0, silent=False)
    stack.exporter.control("churn-v3", rate=0, success=0.78, latency=0.05, error_rate=0.0, silent=False)
    replicas = [PeeringOperator(stack.apiserver.kubeconfig, tmp_path / f"replica-{i}.log").start() for i in (0, 1)]
    try:
        time.sleep(3)  # both replicas announce themselves in the peering object and one pauses
        steps = [10, 20, 40, 70, 100]
        build = canary_manifest if istio else gateway_canary
        stack.create(build(experiment, stack.prometheus.address, steps=steps))
        stack.follow_traffic(experiment)
        yield replicas
    finally:
        if stack.follower:
            stack.follower.stopping.set()
            stack.follower.join(2)
            stack.follower = None
        delete_experiments(stack, experiment)
        for replica in replicas:
            replica.stop()
        for variant in ("churn-v2", "churn-v3"):
            stack.exporter.control(variant, rate=0)
        if istio:
            with contextlib.suppress(kubernetes.client.ApiException):
                stack.objects.delete_namespaced_custom_object(
                    "networking.istio.io", "v1", "default", "virtualservices", "churn"
                )


def test_kopf_peering_one_replica_acts_and_the_other_takes_over(module_stack: Stack, tmp_path: pathlib.Path) -> None:
    """Two replicas, then the acting one leaves: the experiment goes on to the end with no step doubled.

    kopf peering pauses all but one replica, but does not guarantee exclusivity (a replica may act briefly
    before it sees a higher-priority peer, or while a pause propagates under load). What must hold is that
    two replicas never double a step: the resourceVersion-guarded status write refuses a tick decided on a
    stale read. So the invariants asserted are those of the experiment, not of peering: every step recorded
    once in status.history, and the route carrying the weights status says.
    """
    stack = module_stack
    with _two_replicas(stack, tmp_path, "ha", istio=True) as replicas:
        stack.wait_for("ha", lambda s: (s.get("step") or 0) >= 1, 30, "step 1 with two replicas")
        _no_step_twice(stack.status("ha"))
        counts = [ticks(r.metrics_port) for r in replicas]
        assert max(counts) > 0, f"no replica ticked: {counts}"
        active, survivor = (replicas[0], replicas[1]) if counts[0] >= counts[1] else (replicas[1], replicas[0])

        active.stop()  # SIGTERM: kopf withdraws the replica from the peering object on its way out
        step = stack.status("ha").get("step") or 0
        stack.wait_for(
            "ha", lambda s: (s.get("step") or 0) > step or s.get("phase") == "Promoted", 30, "progress after takeover"
        )
        assert ticks(survivor.metrics_port) > 0
        status = stack.wait_for("ha", lambda s: s.get("phase") == "Promoted", 60, "the canary promoted")
        _no_step_twice(status)
        advances = [h["to"] for h in status["history"] if h["action"] == "advance"]
        assert len(advances) == len(set(advances)) == 3, status["history"]  # 10 -> 20 -> 40 -> 70, then promoted
        assert [h["action"] for h in status["history"]].count("promoted") == 1, status["history"]
        _routes_match_status(stack, "ha")


def test_a_killed_replica_is_replaced_within_the_peering_lifetime(module_stack: Stack, tmp_path: pathlib.Path) -> None:
    """SIGKILL sends no goodbye: the passive replica takes over once the active one's peering entry expires
    (MLROLLOUTS_PEERING_LIFETIME, 20 s by default; kopf's own default of 60 s meant a minute without analysis)."""
    stack = module_stack
    with _two_replicas(stack, tmp_path, "crash") as replicas:
        stack.wait_for("crash", lambda s: s.get("phase") == "Progressing", 30, "Progressing with two replicas")
        counts = [ticks(r.metrics_port) for r in replicas]
        active, passive = (replicas[0], replicas[1]) if counts[0] else (replicas[1], replicas[0])
        active.kill()
        killed = time.monotonic()
        deadline = killed + 45
        while time.monotonic() < deadline and "Resuming operations" not in _peering_lines(passive)[-1]:
            time.sleep(0.2)
        takeover = time.monotonic() - killed
        assert "Resuming operations" in _peering_lines(passive)[-1], (
            f"no takeover within 45 s:\n{passive.log()[-1500:]}"
        )
        assert takeover < 35, f"takeover took {takeover:.1f}s"
        before = ticks(passive.metrics_port)
        stack.wait_for("crash", lambda s: ticks(passive.metrics_port) > before, 10, "the survivor ticks")

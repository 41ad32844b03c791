"""The tick's status write is refused when the object changed since it was read; the phase gauges follow."""

from __future__ import annotations

import asyncio

import kubernetes
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from stack import canary_manifest

from mlrollouts.api import parse_experiment
from mlrollouts.controller import telemetry
from mlrollouts.controller.ports import Runtime
from mlrollouts.controller.shard_metrics import write_conflicts
from mlrollouts.controller.write_guard import GuardedObjects
from mlrollouts.localstack.fixtures import local_apiserver
from mlrollouts.localstack.testbackend import SuiteApiServer
from mlrollouts.routing.kube import KubeObjects, ObjectConflict

__all__ = ["local_apiserver"]
GROUP, VERSION, PLURAL = "mlrollouts.dev", "v1alpha1", "modelexperiments"


@pytest.mark.integration
def test_a_status_write_from_a_stale_read_is_refused_and_changes_nothing(local_apiserver: SuiteApiServer) -> None:
    api = kubernetes.config.new_client_from_config(config_file=str(local_apiserver.kubeconfig))
    objects = kubernetes.client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, canary_manifest("x", "http://p:9090"))
    runtime = Runtime(GuardedObjects(KubeObjects.from_kubeconfig(str(local_apiserver.kubeconfig))))
    refusals = write_conflicts.labels(f"{PLURAL}/status")
    refused_before = refusals._value.get()

    async def scenario() -> str | None:
        read = await runtime.read("default", "x")
        version = read["metadata"]["resourceVersion"]
        written = await runtime.write_status("default", "x", {"phase": "Progressing", "step": 1}, version)
        with pytest.raises(ObjectConflict):  # a second writer that read the same version is refused
            await runtime.write_status("default", "x", {"phase": "Progressing", "step": 2}, version)
        return written

    written = asyncio.run(scenario())
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "x")
    assert stored["status"]["step"] == 1
    assert written == stored["metadata"]["resourceVersion"]  # what the next tick's read is checked against
    assert refusals._value.get() == refused_before + 1  # the refusal is counted, once
    api.close()


class _CountingGets:
    def __init__(self, inner: KubeObjects) -> None:
        self.inner, self.gets = inner, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def get(self, *args: str) -> dict:
        self.gets += 1
        return await self.inner.get(*args)


@pytest.mark.integration
def test_a_tick_reads_the_watch_body_only_when_it_shows_its_own_last_write(local_apiserver: SuiteApiServer) -> None:
    """No GET per tick in steady state; a watch that lags the last write (or an edit by someone else) is a GET."""
    api = kubernetes.config.new_client_from_config(config_file=str(local_apiserver.kubeconfig))
    objects = kubernetes.client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, canary_manifest("w", "http://p:9090"))
    counting = _CountingGets(KubeObjects.from_kubeconfig(str(local_apiserver.kubeconfig)))
    runtime = Runtime(counting)  # type: ignore[arg-type]

    async def scenario() -> None:
        stale = await runtime.read("default", "w")  # no write of ours yet: a GET
        assert counting.gets == 1
        await runtime.write_status(
            "default", "w", {"phase": "Progressing", "step": 1}, stale["metadata"]["resourceVersion"]
        )
        assert (await runtime.read("default", "w", stale))["status"]["step"] == 1  # the watch lags: a GET
        assert counting.gets == 2
        current = objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w")
        assert await runtime.read("default", "w", current) == current  # shows our write: no request
        assert counting.gets == 2
        runtime.forget("default", "w")  # the loop ended: nothing remembered
        await runtime.read("default", "w", current)
        assert counting.gets == 3

    asyncio.run(scenario())
    api.close()


def _info_series(name: str) -> dict[str, float]:
    text = generate_latest(telemetry.REGISTRY).decode()
    return {
        f"{s.labels['strategy']}/{s.labels['phase']}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mlrollouts_experiment_info" and s.labels.get("experiment") == name
    }


def _per_phase() -> dict[str, float]:
    families = text_string_to_metric_families(generate_latest(telemetry.REGISTRY).decode())
    return {
        s.labels["phase"]: s.value
        for family in families
        if family.name == "mlrollouts_experiments"
        for s in family.samples
    }


def test_phase_gauges_follow_an_experiment_through_invalid_and_back() -> None:
    manifest = canary_manifest("gauge-demo", "http://p:9090")
    manifest["status"] = {"phase": "Progressing", "weights": {"churn-v2": 80, "churn-v3": 20}}
    experiment = parse_experiment(yaml.safe_load(yaml.safe_dump(manifest)))
    telemetry.forget_experiment("default", "gauge-demo")
    before = _per_phase()
    counts = lambda **moved: {p: before.get(p, 0) + moved.get(p, 0) for p in telemetry.PHASES}  # noqa: E731
    telemetry.record_experiment(experiment, None)
    assert _info_series("gauge-demo") == {"canary/Progressing": 1}
    assert _per_phase() == counts(Progressing=1)
    telemetry.record_experiment(experiment, None)  # the next tick, same phase: counted once
    assert _per_phase() == counts(Progressing=1)
    telemetry.record_invalid("default", "gauge-demo", "canary")
    assert _info_series("gauge-demo") == {"canary/Invalid": 1}
    assert _per_phase() == counts(Invalid=1)
    telemetry.record_experiment(experiment, None)
    assert _info_series("gauge-demo") == {"canary/Progressing": 1}
    assert _per_phase() == counts(Progressing=1)
    telemetry.forget_experiment("default", "gauge-demo")
    assert _info_series("gauge-demo") == {}
    assert _per_phase() == counts()


def _bounds(name: str) -> dict[str, float]:
    families = text_string_to_metric_families(generate_latest(telemetry.REGISTRY).decode())
    return {
        f"{s.labels['variant']}/{s.labels['bound']}": s.value
        for family in families
        if family.name == "mlrollouts_confidence_bound"
        for s in family.samples
        if s.labels.get("experiment") == name
    }


def test_the_confidence_sequence_is_exported_while_its_bounds_are_finite() -> None:
    manifest = canary_manifest("bounds-demo", "http://p:9090")
    evidence = {"churn-v3": {"pValue": 0.2, "confidenceInterval": [-0.03, 0.05], "looks": 3}}
    manifest["status"] = {"phase": "Progressing", "evidence": evidence}
    telemetry.record_experiment(parse_experiment(manifest), None)
    assert _bounds("bounds-demo") == {"churn-v3/lower": -0.03, "churn-v3/upper": 0.05}
    evidence["churn-v3"]["confidenceInterval"] = [-0.01, None]  # a restart: the upper bound is open again
    telemetry.record_experiment(parse_experiment(manifest), None)
    assert _bounds("bounds-demo") == {"churn-v3/lower": -0.01}
    telemetry.forget_experiment("default", "bounds-demo")
    assert _bounds("bounds-demo") == {}


def _guardrail_series(name: str) -> dict[str, float]:
    from prometheus_client import generate_latest

    text = generate_latest(telemetry.REGISTRY).decode()
    return {
        f"{s.name}/{s.labels['guardrail']}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("mlrollouts_guardrail_") and s.labels.get("experiment") == name
    }


def test_guardrail_gauges_follow_the_status_and_go_with_the_experiment() -> None:
    manifest = canary_manifest("guardrail-gauges", "http://p:9090")
    manifest["status"] = {
        "phase": "Progressing",
        "guardrails": [
            {"name": "error-rate", "healthy": False, "verdict": "possible", "pValue": 0.2},
            {"name": "p95-latency", "healthy": True},
        ],
    }
    telemetry.record_experiment(parse_experiment(yaml.safe_load(yaml.safe_dump(manifest))), None)
    assert _guardrail_series("guardrail-gauges") == {
        "mlrollouts_guardrail_healthy/error-rate": 0,
        "mlrollouts_guardrail_healthy/p95-latency": 1,
        "mlrollouts_guardrail_p_value/error-rate": 0.2,
    }
    manifest["status"]["guardrails"] = [{"name": "p95-latency", "healthy": True}]
    telemetry.record_experiment(parse_experiment(yaml.safe_load(yaml.safe_dump(manifest))), None)
    assert _guardrail_series("guardrail-gauges") == {"mlrollouts_guardrail_healthy/p95-latency": 1}
    telemetry.forget_experiment("default", "guardrail-gauges")
    assert _guardrail_series("guardrail-gauges") == {}


def test_a_forgotten_experiment_leaves_no_series_behind() -> None:
    """Deleted, or handed to another replica (active-active): a stale weight or p-value would mislead alerts."""
    manifest = canary_manifest("handed-over", "http://p:9090")
    manifest["status"] = {
        "phase": "Progressing",
        "step": 1,
        "weights": {"churn-v2": 80, "churn-v3": 20},
        "analysis": {"pValue": 0.3, "srmPValue": 0.5},
    }
    telemetry.record_experiment(parse_experiment(yaml.safe_load(yaml.safe_dump(manifest))), 1_700_000_000.0)

    def series() -> set[str]:
        families = text_string_to_metric_families(generate_latest(telemetry.REGISTRY).decode())
        return {s.name for f in families for s in f.samples if s.labels.get("experiment") == "handed-over"}

    assert {"mlrollouts_challenger_weight", "mlrollouts_p_value", "mlrollouts_experiment_step"} <= series()
    telemetry.forget_experiment("default", "handed-over")
    assert series() == set()

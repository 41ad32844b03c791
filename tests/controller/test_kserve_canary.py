"""A KServe canary through the operator's tick: the InferenceService's canaryTrafficPercent follows the steps,
a rollback pins it to 0, every write is valid against the upstream KServe CRD; a shadow on KServe is Invalid."""

from __future__ import annotations

import asyncio
import copy
import pathlib
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from tick_support import fake_tick_ports

from mlrollouts.api import ModelExperiment
from mlrollouts.controller.reading import ACTION_ANNOTATION
from mlrollouts.controller.tick import reconcile
from mlrollouts.engine import Observations, VariantObservation
from mlrollouts.engine.types import Event
from mlrollouts.routing.fake import FakeKubeObjects
from mlrollouts.routing.kserve import API_VERSION, PLURAL
from schema_validation import validate_custom_object

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
API = "mlrollouts.dev/v1alpha1"
EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "canary-kserve.yaml"


class _ValidatingFake(FakeKubeObjects):
    """Every InferenceService written must be valid against the upstream KServe CRD (and so must the seed)."""

    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        if plural == PLURAL:
            validate_custom_object(obj)
        return super().add(plural, obj)

    def _write(self, key: tuple[str, str, str, str], proposed: dict[str, Any]) -> dict[str, Any]:
        if key[1] == PLURAL:
            validate_custom_object(proposed)
        return super()._write(key, proposed)


def _inference_service() -> dict[str, Any]:
    """The InferenceService right after the new model was applied with canaryTrafficPercent 0."""
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": "churn", "namespace": "ml"},
        "spec": {
            "predictor": {
                "canaryTrafficPercent": 0,
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://models/churn/v3"},
            }
        },
        "status": {
            "components": {
                "predictor": {
                    "latestCreatedRevision": "churn-predictor-00003",
                    "latestReadyRevision": "churn-predictor-00003",
                    "latestRolledoutRevision": "churn-predictor-00002",
                }
            }
        },
    }


class _Traffic:
    """Cumulative counts that grow with each variant's current weight (equal rates: no verdict either way)."""

    def __init__(self) -> None:
        self.trials: dict[str, float] = {"churn-v2": 0.0, "churn-v3": 0.0}

    async def observe(self, experiment: ModelExperiment, now: datetime) -> Observations:
        weights = experiment.status.weights or {"churn-v2": 100}
        for name in self.trials:
            self.trials[name] += 400.0 * weights.get(name, 0)
        return Observations(
            time=now,
            variants={
                name: VariantObservation({"successes": trials / 2, "trials": trials})
                for name, trials in self.trials.items()
            },
            cumulative_counters=True,
        )


class _Cluster:
    def __init__(self, manifest: dict[str, Any]) -> None:
        self.objects = _ValidatingFake()
        manifest = copy.deepcopy(manifest)
        manifest["metadata"].update(uid="u-1", generation=1)
        self.objects.add("modelexperiments", manifest)
        self.objects.add(PLURAL, _inference_service())
        self.name, self.traffic, self.events = manifest["metadata"]["name"], _Traffic(), []

    def body(self) -> dict[str, Any]:
        return self.objects.stored(API, "modelexperiments", "ml", self.name)

    def predictor(self) -> dict[str, Any]:
        return self.objects.stored(API_VERSION, PLURAL, "ml", "churn")["spec"]["predictor"]

    def tick(self, at: datetime) -> dict[str, Any]:
        async def post_event(event: Event) -> None:
            self.events.append(event)

        ports = fake_tick_ports(self.objects, self.traffic, post_event)
        asyncio.run(reconcile(self.body(), at, ports))
        return self.body()["status"]


def _manifest() -> dict[str, Any]:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"]["analysis"]["guardrails"] = []
    return manifest


def test_canary_traffic_percent_follows_the_steps_and_rolls_back_to_zero() -> None:
    cluster = _Cluster(_manifest())
    seen = []
    now = T0
    for _ in range(12):
        status = cluster.tick(now)
        percent = cluster.predictor()["canaryTrafficPercent"]
        assert percent == status["weights"]["churn-v3"]  # what the InferenceService says is what status says
        if not seen or seen[-1] != percent:
            seen.append(percent)
        if percent == 50:
            break
        now += timedelta(minutes=16)  # one stepDuration (15m) later, with 400 trials per weight point since
    assert seen == [5, 20, 50], seen
    assert cluster.predictor()["model"]["storageUri"] == "gs://models/churn/v3"  # only the percent was written

    cluster.objects.objects[(API, "modelexperiments", "ml", cluster.name)]["metadata"]["annotations"] = {
        ACTION_ANNOTATION: "rollback"
    }
    status = cluster.tick(now + timedelta(seconds=30))
    assert status["phase"] == "RolledBack" and status["weightSummary"] == "churn-v3=0%"
    assert cluster.predictor()["canaryTrafficPercent"] == 0


def test_a_shadow_on_kserve_is_invalid_naming_the_field_and_moves_nothing() -> None:
    manifest = _manifest()
    spec = manifest["spec"]
    del spec["canary"]
    spec.update(strategy="shadow", shadow={"mirrorPercent": 100, "duration": "1h"})
    cluster = _Cluster(manifest)
    status = cluster.tick(T0)
    assert (status["phase"], status["reason"]) == ("Invalid", "InvalidSpec")
    assert status["message"].startswith("spec.strategy: traffic.provider kserve")
    assert cluster.predictor()["canaryTrafficPercent"] == 0 and cluster.objects.writes == 1  # the status only

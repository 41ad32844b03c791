"""The factory picks the router by spec.traffic.provider; the built-in gateway router only records."""

from __future__ import annotations

from routing_objects import ValidatingFake

from mlrollouts.api.experiment import ModelExperiment, ObjectMeta, parse_spec
from mlrollouts.api.status import ModelExperimentStatus
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.factory import make_router, routing_target
from mlrollouts.routing.gateway import GatewayRouter
from mlrollouts.routing.gatewayapi import GatewayApiRouter
from mlrollouts.routing.istio import IstioRouter
from mlrollouts.routing.service import ServiceRouter

TRAFFIC = {
    "istio": {"provider": "istio", "istio": {"virtualService": "churn", "routes": ["predict"]}},
    "gatewayAPI": {"provider": "gatewayAPI", "gatewayAPI": {"httpRoute": "churn-route", "rule": 1}},
    "service": {"provider": "service", "service": {"name": "churn", "totalReplicas": 20}},
    "gateway": {"provider": "gateway", "gateway": {"stickiness": {"header": "x-user-id"}}},
}


def experiment(provider: str, status: dict | None = None) -> ModelExperiment:
    spec = parse_spec(
        {
            "strategy": "canary",
            "champion": {"name": "churn-v2", "service": "churn-v2"},
            "challengers": [{"name": "churn-v3", "service": "churn-v3"}],
            "traffic": TRAFFIC[provider],
            "canary": {"steps": [10, 50, 100]},
            "analysis": {
                "prometheus": {"address": "http://prometheus:9090"},
                "primaryMetric": {"name": "retention", "successes": "s", "trials": "t"},
            },
        }
    )
    return ModelExperiment(
        metadata=ObjectMeta(name="churn-v3", namespace="ml"),
        spec=spec,
        status=ModelExperimentStatus.model_validate(status or {}),
    )


def test_one_router_per_provider_and_the_object_each_claims() -> None:
    objects = ValidatingFake()
    kinds = {p: type(make_router(experiment(p), objects)) for p in TRAFFIC}
    assert kinds == {
        "istio": IstioRouter,
        "gatewayAPI": GatewayApiRouter,
        "service": ServiceRouter,
        "gateway": GatewayRouter,
    }
    targets = {p: routing_target(experiment(p)) for p in TRAFFIC}
    assert targets == {
        "istio": ("VirtualService", "ml", "churn"),
        "gatewayAPI": ("HTTPRoute", "ml", "churn-route"),
        "service": ("Service", "ml", "churn"),
        "gateway": None,
    }


async def test_gateway_router_starts_from_status_and_records_without_io() -> None:
    objects = ValidatingFake()
    fresh = make_router(experiment("gateway"), objects)
    assert (await fresh.current_split()).split == Split({"churn-v2": 100, "churn-v3": 0})

    running = make_router(experiment("gateway", {"weights": {"churn-v2": 75, "churn-v3": 25}}), objects)
    assert (await running.current_split()).split == Split({"churn-v2": 75, "churn-v3": 25})

    applied = await running.apply(Split({"churn-v2": 100}), Mirror(("churn-v3",), 40))
    assert applied.split == Split({"churn-v2": 100, "churn-v3": 0}) and applied.mirror == Mirror(("churn-v3",), 40)
    assert applied.changed and not (await running.apply(applied.split, applied.mirror)).changed
    current = await running.current_split()
    assert (current.split, current.mirror) == (applied.split, applied.mirror)
    await running.restore()
    assert (await running.current_split()).mirror is None
    assert objects.writes == 0 and objects.objects == {}

"""One factory keyed on `spec.traffic.provider` (Flagger's router factory shape)."""

from __future__ import annotations

from collections.abc import Sequence

from mlrollouts.api.experiment import ModelExperiment
from mlrollouts.api.traffic import Traffic, Variant
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import TrafficRouter
from mlrollouts.routing.gateway import GatewayRouter
from mlrollouts.routing.gatewayapi import GatewayApiRouter
from mlrollouts.routing.istio import IstioRouter
from mlrollouts.routing.kserve import KServeRouter
from mlrollouts.routing.kube import ObjectClient
from mlrollouts.routing.service import ServiceRouter

OBJECT_FIELDS = {
    "istio": ("VirtualService", "virtualService"),
    "gatewayAPI": ("HTTPRoute", "httpRoute"),
    "service": ("Service", "name"),
    "kserve": ("InferenceService", "inferenceService"),
}
"""provider -> (kind of the object it writes, the field of its traffic block naming it), for raw reads."""


def make_router(experiment: ModelExperiment, objects: ObjectClient) -> TrafficRouter:
    spec = experiment.spec
    router = object_router(experiment.metadata.namespace, spec.traffic, spec.variants, objects)
    if router is not None:
        return router
    return GatewayRouter(spec.variant_names, *_recorded_traffic(experiment))


def object_router(
    namespace: str, traffic: Traffic, variants: Sequence[Variant], objects: ObjectClient
) -> TrafficRouter | None:
    """The router of a provider that writes a routing object; None for the built-in gateway (it has none)."""
    if traffic.provider == "istio" and traffic.istio is not None:
        return IstioRouter(objects, namespace, variants, traffic.istio)
    if traffic.provider == "gatewayAPI" and traffic.gateway_api is not None:
        return GatewayApiRouter(objects, namespace, variants, traffic.gateway_api)
    if traffic.provider == "service" and traffic.service is not None:
        return ServiceRouter(objects, namespace, variants, traffic.service)
    if traffic.provider == "kserve" and traffic.kserve is not None:
        return KServeRouter(objects, namespace, variants, traffic.kserve)
    return None


def routing_target(experiment: ModelExperiment) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of the object whose traffic the experiment owns; two owners are a Conflict.

    None for the built-in gateway, which reads each experiment's own status and so cannot be shared.
    """
    return traffic_target(experiment.metadata.namespace, experiment.spec.traffic)


def traffic_target(namespace: str, traffic: Traffic) -> tuple[str, str, str] | None:
    """routing_target of a traffic block (the spec's, or the one recorded in status.routing)."""
    if traffic.istio is not None:
        return ("VirtualService", namespace, traffic.istio.virtual_service)
    if traffic.gateway_api is not None:
        return ("HTTPRoute", namespace, traffic.gateway_api.http_route)
    if traffic.service is not None:
        return ("Service", namespace, traffic.service.name)
    if traffic.kserve is not None:
        return ("InferenceService", namespace, traffic.kserve.inference_service)
    return None


def _recorded_traffic(experiment: ModelExperiment) -> tuple[Split, Mirror | None]:
    """What the gateway serves now according to status: champion 100 % before the first tick."""
    names, status = experiment.spec.variant_names, experiment.status
    weights = {name: status.weights.get(name, 0) for name in names}
    split = Split(weights) if sum(weights.values()) == 100 else Split.all_to(names[0], names)
    mirror = Mirror(tuple(names[1:]), status.mirror_percent) if status.mirror_percent else None
    return split, mirror

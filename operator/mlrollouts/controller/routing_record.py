"""Where the split actually is: the routing the operator last acted on, kept in status.routing.

A spec can change after traffic moved: broken by a typo, or pointed at another VirtualService. Neither the
tick nor the finalizer takes the spec's word for where the split is. The tick records spec.traffic and the
variants in status.routing whenever a split is applied (status is a subresource: a tenant allowed to edit the
spec usually cannot write it); it refuses a running experiment's move to other routing objects (Invalid,
reason RoutingChanged: the split stays where it is, nothing new is touched); the finalizer gives the champion
100 % on the recorded routing; the routing index keeps the recorded object claimed while the split is on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mlrollouts.api import TERMINAL_PHASES, ModelExperimentSpec
from mlrollouts.api.status import RoutingStatus
from mlrollouts.api.traffic import Traffic, Variant
from mlrollouts.routing.base import TrafficRouter
from mlrollouts.routing.factory import OBJECT_FIELDS, object_router, traffic_target
from mlrollouts.routing.kube import ObjectClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    traffic: Traffic
    variants: tuple[Variant, ...]

    @property
    def champion(self) -> str:
        return self.variants[0].name


def holds_split(status: Mapping[str, Any]) -> bool:
    """A split is applied and not yet given back: a running (or mid-run Invalid) experiment with weights."""
    return bool(status.get("weights")) and status.get("phase") not in TERMINAL_PHASES


def recorded(status: Mapping[str, Any]) -> Record | None:
    """The routing recorded in status, or None (not applied yet, or written by an operator before 0.x)."""
    routing = status.get("routing") or {}
    traffic, variants = routing.get("traffic"), routing.get("variants")
    if not traffic or not variants:
        return None
    try:
        return Record(Traffic.model_validate(traffic), tuple(Variant.model_validate(v) for v in variants))
    except ValidationError as error:
        log.warning("status.routing holds no usable record: %s", error)
        return None


def recorded_target(namespace: str, status: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The recorded routing object, read raw: the routing index calls this on every watch event."""
    traffic = (status.get("routing") or {}).get("traffic") or {}
    kind, field = OBJECT_FIELDS.get(traffic.get("provider"), (None, ""))
    name = (traffic.get(traffic.get("provider")) or {}).get(field) if kind else None
    return (kind, namespace, name) if kind and isinstance(name, str) else None


def with_record(routing: RoutingStatus | None, spec: ModelExperimentSpec) -> RoutingStatus:
    """status.routing carrying the spec's routing as the one acted on (unchanged when it already is)."""
    routing = routing or RoutingStatus(provider=spec.traffic.provider)
    if routing.traffic == spec.traffic and routing.variants == spec.variants:
        return routing
    return routing.model_copy(update={"traffic": spec.traffic, "variants": list(spec.variants)})


def describe(namespace: str, traffic: Traffic) -> str:
    """The routing object for people, e.g. "VirtualService default/churn (routes predict)"."""
    target = traffic_target(namespace, traffic)
    if target is None:
        return "the built-in gateway"
    text = f"{target[0]} {target[1]}/{target[2]}"
    if traffic.istio is not None and traffic.istio.routes:
        text += f" (routes {', '.join(traffic.istio.routes)})"
    if traffic.gateway_api is not None:
        text += f" (rule {traffic.gateway_api.rule})"
    return text


def _placement(traffic: Traffic) -> dict[str, Any]:
    """What decides where the split lands: the block minus what only tunes it (replicas, stickiness)."""
    raw = traffic.model_dump(by_alias=True, exclude_none=True)
    raw.pop("gateway", None)
    (raw.get("service") or {}).pop("totalReplicas", None)
    return raw


def _backend(variant: Variant) -> tuple[str, str | None, str | None]:
    return (variant.service, variant.subset, variant.deployment)


def change(record: Record, spec: ModelExperimentSpec, namespace: str) -> tuple[str, str] | None:
    """(field, message) when the spec would move the split off the recorded routing, else None.

    Adding challengers is not a move (the experiment restarts from step 0 with them); removing a variant,
    changing the champion or a variant's service, subset or deployment, or the routing object is.
    """
    where = describe(namespace, record.traffic)
    ending = (
        f"while the split is applied on {where}; the operator does not move a running split to other objects. "
        f"Put it back to continue (the experiment restarts from step 0), or delete the experiment: "
        f"{record.champion} then gets 100 % back on {where}"
    )
    if _placement(record.traffic) != _placement(spec.traffic):
        return "spec.traffic", f"now names {describe(namespace, spec.traffic)} {ending}"
    if spec.champion.name != record.champion:
        return "spec.champion", f"changed from {record.champion} to {spec.champion.name} {ending}"
    current = {v.name: v for v in spec.variants}
    for old in record.variants:
        new = current.get(old.name)
        if new is None:
            return "spec.challengers", f"variant {old.name} was removed {ending}"
        if _backend(new) != _backend(old):
            field = "spec.champion" if old.name == record.champion else "spec.challengers"
            return field, f"variant {old.name} now points at {_show(new)} instead of {_show(old)} {ending}"
    return None


def _show(variant: Variant) -> str:
    parts = [f"service {variant.service}"]
    parts += [f"subset {variant.subset}"] if variant.subset else []
    parts += [f"deployment {variant.deployment}"] if variant.deployment else []
    return ", ".join(parts)


def held_split(namespace: str, status: Mapping[str, Any], fallback: Traffic | None = None) -> str | None:
    """What an Invalid experiment's message adds about the split it keeps applied; None if it holds none."""
    if not holds_split(status):
        return None
    record = recorded(status)
    traffic = record.traffic if record else fallback
    where = describe(namespace, traffic) if traffic is not None else "the routing object"
    weights = ", ".join(f"{name} {weight} %" for name, weight in (status.get("weights") or {}).items())
    champion = record.champion if record else "the champion"
    return (
        f"the last applied split ({weights}) stays on {where} until the spec is fixed (the experiment then "
        f"restarts from step 0) or the experiment is deleted ({champion} then gets 100 % back)"
    )


def router(namespace: str, record: Record, objects: ObjectClient) -> TrafficRouter | None:
    """A router over the recorded routing; None for the built-in gateway (it serves from status, not an object)."""
    variants: Sequence[Variant] = record.variants
    return object_router(namespace, record.traffic, variants, objects)

"""Istio: the weights of named HTTP routes of a VirtualService, plus `mirror`/`mirrors` for shadow traffic.

Written with server-side apply as field manager `mlrollouts`, which owns `spec.http` (see OWNED).
Only the managed routes' destination weights and mirror fields change; their match, retries, timeout, headers
and every unmanaged route stay as they were. Destinations are matched by host (short name or FQDN) and by
subset when the variant has one; a missing destination is added with the champion's port.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mlrollouts.api.spec import IstioTraffic, Variant
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import AppliedTraffic, RoutingError
from mlrollouts.routing.common import format_mirror, format_split, normalize_mirror, read_object, update_object, verify
from mlrollouts.routing.kube import ObjectClient
from mlrollouts.routing.weights import complete_split, percentages

API_VERSION = "networking.istio.io/v1"
PLURAL = "virtualservices"
_MIRROR_FIELDS = ("mirror", "mirrorPercentage", "mirrorPercent", "mirror_percent")
# What server-side apply sends: `spec.http` is an atomic list in Istio's CRD (no x-kubernetes-list-type), so the
# weights inside it cannot be owned apart from it. spec.hosts, spec.gateways, labels... keep their manager.
OWNED = (("spec", "http"),)


class IstioRouter:
    def __init__(
        self,
        objects: ObjectClient,
        namespace: str,
        variants: Sequence[Variant],
        config: IstioTraffic,
        api_version: str = API_VERSION,
    ) -> None:
        self._objects, self._namespace, self._variants = objects, namespace, list(variants)
        self._config, self._api_version = config, api_version
        self._names = [v.name for v in self._variants]
        self._what = f"VirtualService {namespace}/{config.virtual_service}"

    async def current_split(self) -> AppliedTraffic:
        service = await self._read()
        per_route = [(label, self._route_traffic(route, label)) for label, route in self._managed(service)]
        first = per_route[0][1]
        if all(traffic == first for _, traffic in per_route):
            labels = ", ".join(label for label, _ in per_route)
            return AppliedTraffic(first[0], first[1], f"{self._what} routes {labels}")
        details = "; ".join(f"{lbl}: {format_split(t[0])}, mirror {format_mirror(t[1])}" for lbl, t in per_route)
        return AppliedTraffic(first[0], first[1], f"{self._what}: managed routes disagree ({details})", False)

    async def apply(self, split: Split, mirror: Mirror | None) -> AppliedTraffic:
        weights = complete_split(split, self._names)
        wanted_mirror = normalize_mirror(mirror, self._names)

        def change(service: dict[str, Any]) -> dict[str, Any]:
            for label, route in self._managed(service):
                self._set_route(route, weights, wanted_mirror, label)
            return service

        changed = await update_object(
            self._objects,
            self._api_version,
            PLURAL,
            self._namespace,
            self._config.virtual_service,
            "spec.traffic.istio.virtualService",
            change,
            OWNED,
        )
        applied = verify(await self.current_split(), Split(weights), wanted_mirror, self._what)
        message = applied.message
        if wanted_mirror is not None and len(wanted_mirror.targets) > 1:
            message = f"{message}; several mirror targets use the route's `mirrors` list (Istio 1.22 or later)"
        return replace(applied, message=message, changed=changed)

    async def restore(self) -> None:
        await self.apply(Split.all_to(self._names[0], self._names), None)

    async def _read(self) -> dict[str, Any]:
        return await read_object(
            self._objects,
            self._api_version,
            PLURAL,
            self._namespace,
            self._config.virtual_service,
            "spec.traffic.istio.virtualService",
        )

    def _managed(self, service: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(label, route) of every managed HTTP route, as live references into `service`."""
        routes = (service.get("spec") or {}).get("http") or []
        labelled = [(route.get("name") or f"spec.http[{i}]", route) for i, route in enumerate(routes)]
        if self._config.routes is None:
            champion = self._variants[0]
            managed = [(lbl, r) for lbl, r in labelled if any(self._owns(champion, d) for d in _destinations(r))]
            if not managed:
                raise RoutingError(
                    f"{self._what} has no HTTP route sending to the champion's host {champion.service!r}: "
                    "add a destination for it or name the routes in spec.traffic.istio.routes"
                )
            return managed
        by_name = {route.get("name"): route for route in routes}
        missing = [name for name in self._config.routes if name not in by_name]
        if missing:
            known = ", ".join(sorted(str(n) for n in by_name if n)) or "none"
            raise RoutingError(
                f"spec.traffic.istio.routes names {', '.join(missing)}, which {self._what} does not have "
                f"(its named HTTP routes: {known}): fix the route names"
            )
        return [(name, by_name[name]) for name in self._config.routes]

    def _owns(self, variant: Variant, destination: dict[str, Any]) -> bool:
        host = str(destination.get("host", ""))
        short, namespaced = variant.service, f"{variant.service}.{self._namespace}"
        host_matches = host in (short, namespaced, f"{namespaced}.svc") or host.startswith(f"{namespaced}.svc.")
        return host_matches and (variant.subset is None or destination.get("subset") == variant.subset)

    def _owner(self, destination: dict[str, Any], label: str) -> str | None:
        owners = [v.name for v in self._variants if self._owns(v, destination)]
        if len(owners) > 1:
            raise RoutingError(
                f"{self._what} route {label}: destination {destination.get('host')} matches variants "
                f"{', '.join(owners)}: give each variant its own service or subset"
            )
        return owners[0] if owners else None

    def _owned_entries(self, route: dict[str, Any], label: str) -> dict[str, dict[str, Any]]:
        """The route's destination entries by variant; foreign or repeated destinations are refused."""
        entries: dict[str, dict[str, Any]] = {}
        for entry in route.get("route") or []:
            destination = entry.get("destination") or {}
            owner = self._owner(destination, label)
            if owner is None:
                raise RoutingError(
                    f"{self._what} route {label} also sends to {destination.get('host')!r}, which is not a "
                    "variant of this experiment: remove that destination or leave the route out of "
                    "spec.traffic.istio.routes"
                )
            if owner in entries:
                raise RoutingError(f"{self._what} route {label} has two destinations for variant {owner}: keep one")
            entries[owner] = entry
        return entries

    def _route_traffic(self, route: dict[str, Any], label: str) -> tuple[Split, Mirror | None]:
        entries = self._owned_entries(route, label)
        single = len(route.get("route") or []) == 1
        raw = {name: _weight(entries[name], single) if name in entries else 0 for name in self._names}
        return percentages(raw, f"{self._what} route {label}"), self._route_mirror(route, label)

    def _route_mirror(self, route: dict[str, Any], label: str) -> Mirror | None:
        found: dict[str, float] = {}
        if route.get("mirror"):
            owner = self._owner(route["mirror"], label)
            if owner is not None:
                found[owner] = _percent(route.get("mirrorPercentage"), route.get("mirrorPercent"))
        for entry in route.get("mirrors") or []:
            owner = self._owner(entry.get("destination") or {}, label)
            if owner is not None:
                found[owner] = _percent(entry.get("percentage"), None)
        if not found:
            return None
        return normalize_mirror(Mirror(tuple(found), round(next(iter(found.values())))), self._names)

    def _set_route(self, route: dict[str, Any], weights: dict[str, int], mirror: Mirror | None, label: str) -> None:
        entries = self._owned_entries(route, label)
        destinations = route.setdefault("route", [])
        template = (entries.get(self._names[0]) or {}).get("destination", {})
        for variant in self._variants:
            if variant.name in entries:
                entries[variant.name]["weight"] = weights[variant.name]
            else:
                destinations.append(
                    {"destination": self._destination(variant, template), "weight": weights[variant.name]}
                )
        self._set_mirror(route, mirror, template, label)

    def _set_mirror(self, route: dict[str, Any], mirror: Mirror | None, template: dict[str, Any], label: str) -> None:
        if route.get("mirror") and self._owner(route["mirror"], label) is not None:
            for field in _MIRROR_FIELDS:
                route.pop(field, None)
        foreign = [m for m in route.get("mirrors") or [] if self._owner(m.get("destination") or {}, label) is None]
        route.pop("mirrors", None)
        if foreign:
            route["mirrors"] = foreign
        if mirror is None:
            return
        targets = [v for v in self._variants if v.name in mirror.targets]
        if len(targets) == 1 and not foreign and not route.get("mirror"):
            route["mirror"] = self._destination(targets[0], template)
            route["mirrorPercentage"] = {"value": float(mirror.percent)}
            return
        if route.get("mirror"):
            raise RoutingError(
                f"{self._what} route {label} already mirrors to {route['mirror'].get('host')!r}: remove that "
                "mirror (or move it to the `mirrors` list) so the experiment can mirror to its challengers"
            )
        route["mirrors"] = foreign + [
            {"destination": self._destination(t, template), "percentage": {"value": float(mirror.percent)}}
            for t in targets
        ]

    @staticmethod
    def _destination(variant: Variant, template: dict[str, Any]) -> dict[str, Any]:
        destination: dict[str, Any] = {"host": variant.service}
        if variant.subset:
            destination["subset"] = variant.subset
        if "port" in template:
            destination["port"] = dict(template["port"])
        return destination


def _destinations(route: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry.get("destination") or {} for entry in route.get("route") or []]


def _weight(entry: dict[str, Any], single: bool) -> int:
    """Istio sends everything to a lone destination without a weight; among several, no weight means 0."""
    if "weight" in entry:
        return int(entry["weight"])
    return 100 if single else 0


def _percent(percentage: dict[str, Any] | None, legacy: int | None) -> float:
    """mirrorPercentage.value, else the deprecated integer field, else Istio's default of 100 %."""
    if percentage and "value" in percentage:
        return float(percentage["value"])
    return float(legacy) if legacy is not None else 100.0

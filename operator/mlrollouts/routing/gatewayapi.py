"""Gateway API: `backendRefs[].weight` of one HTTPRoute rule, plus `RequestMirror` filters for shadow traffic.

Written with server-side apply as field manager `mlrollouts`, which owns `spec.rules` (see OWNED).
Other rules, the rule's matches and its other filters stay as they were. Backends are matched by Service name
(in the experiment's namespace); a missing one is added with the champion's port, which Gateway API requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mlrollouts.api.spec import GatewayApiTraffic, Variant
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import AppliedTraffic, RoutingError
from mlrollouts.routing.common import normalize_mirror, read_object, update_object, verify
from mlrollouts.routing.kube import ObjectClient
from mlrollouts.routing.weights import complete_split, percentages

API_VERSION = "gateway.networking.k8s.io/v1"
PLURAL = "httproutes"
FIELD = "spec.traffic.gatewayAPI.httpRoute"
# What server-side apply sends: `spec.rules` is `x-kubernetes-list-type: atomic` in the Gateway API CRD, so the
# weights inside it cannot be owned apart from it. parentRefs, hostnames, labels... keep their manager.
OWNED = (("spec", "rules"),)


class GatewayApiRouter:
    def __init__(
        self,
        objects: ObjectClient,
        namespace: str,
        variants: Sequence[Variant],
        config: GatewayApiTraffic,
        api_version: str = API_VERSION,
    ) -> None:
        self._objects, self._namespace, self._variants = objects, namespace, list(variants)
        self._config, self._api_version = config, api_version
        self._names = [v.name for v in self._variants]
        self._what = f"HTTPRoute {namespace}/{config.http_route} rule {config.rule}"

    async def current_split(self) -> AppliedTraffic:
        route = await read_object(
            self._objects, self._api_version, PLURAL, self._namespace, self._config.http_route, FIELD
        )
        rule = self._rule(route)
        refs = self._owned_refs(rule)
        raw = {name: int(refs[name].get("weight", 1)) if name in refs else 0 for name in self._names}
        return AppliedTraffic(percentages(raw, self._what), self._mirror(rule), self._what)

    async def apply(self, split: Split, mirror: Mirror | None) -> AppliedTraffic:
        weights = complete_split(split, self._names)
        wanted_mirror = normalize_mirror(mirror, self._names)

        def change(route: dict[str, Any]) -> dict[str, Any]:
            self._set_rule(self._rule(route), weights, wanted_mirror)
            return route

        changed = await update_object(
            self._objects, self._api_version, PLURAL, self._namespace, self._config.http_route, FIELD, change, OWNED
        )
        applied = verify(await self.current_split(), Split(weights), wanted_mirror, self._what)
        return replace(applied, changed=changed)

    async def restore(self) -> None:
        await self.apply(Split.all_to(self._names[0], self._names), None)

    def _rule(self, route: dict[str, Any]) -> dict[str, Any]:
        rules = (route.get("spec") or {}).get("rules") or []
        if self._config.rule >= len(rules):
            raise RoutingError(
                f"spec.traffic.gatewayAPI.rule is {self._config.rule} but HTTPRoute {self._namespace}/"
                f"{self._config.http_route} has {len(rules)} rule(s): use an index from 0 to {len(rules) - 1}"
            )
        return rules[self._config.rule]

    def _owner(self, ref: dict[str, Any]) -> str | None:
        if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
            return None
        if ref.get("namespace", self._namespace) != self._namespace:
            return None
        return next((v.name for v in self._variants if v.service == ref.get("name")), None)

    def _owned_refs(self, rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
        refs: dict[str, dict[str, Any]] = {}
        for ref in rule.get("backendRefs") or []:
            owner = self._owner(ref)
            if owner is None:
                raise RoutingError(
                    f"{self._what} also sends to {ref.get('kind', 'Service')} {ref.get('name')!r}, which is not a "
                    "variant of this experiment: remove that backendRef or point spec.traffic.gatewayAPI.rule "
                    "at a rule of the experiment's Services only"
                )
            if owner in refs:
                raise RoutingError(f"{self._what} has two backendRefs for variant {owner}: keep one")
            refs[owner] = ref
        return refs

    def _mirror(self, rule: dict[str, Any]) -> Mirror | None:
        found: dict[str, float] = {}
        for mirror_filter in self._own_mirror_filters(rule):
            spec = mirror_filter["requestMirror"]
            owner = self._owner(spec["backendRef"])
            if owner is not None:
                found[owner] = _mirror_percent(spec)
        if not found:
            return None
        return normalize_mirror(Mirror(tuple(found), round(next(iter(found.values())))), self._names)

    def _own_mirror_filters(self, rule: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            f
            for f in rule.get("filters") or []
            if f.get("type") == "RequestMirror" and self._owner((f.get("requestMirror") or {}).get("backendRef") or {})
        ]

    def _set_rule(self, rule: dict[str, Any], weights: dict[str, int], mirror: Mirror | None) -> None:
        refs = self._owned_refs(rule)
        backend_refs = rule.setdefault("backendRefs", [])
        for variant in self._variants:
            if variant.name in refs:
                refs[variant.name]["weight"] = weights[variant.name]
            else:
                port = self._port(refs)
                backend_refs.append({"name": variant.service, "port": port, "weight": weights[variant.name]})
        ours = self._own_mirror_filters(rule)
        filters = [f for f in rule.get("filters") or [] if f not in ours]
        if mirror is not None:
            filters += [
                {
                    "type": "RequestMirror",
                    "requestMirror": {
                        "backendRef": {"name": v.service, "port": self._port(refs)},
                        "percent": mirror.percent,
                    },
                }
                for v in self._variants
                if v.name in mirror.targets
            ]
        if filters:
            rule["filters"] = filters
        else:
            rule.pop("filters", None)

    def _port(self, refs: dict[str, dict[str, Any]]) -> int:
        """The port for a new backendRef: the champion's, else any variant's (Gateway API requires one)."""
        for name in self._names:
            if "port" in refs.get(name, {}):
                return int(refs[name]["port"])
        raise RoutingError(
            f"{self._what} has no backendRef with a port to copy for the challengers: add the champion's "
            "Service to the rule's backendRefs with its port"
        )


def _mirror_percent(spec: dict[str, Any]) -> float:
    """`percent`, else `fraction` numerator/denominator (default denominator 100), else everything."""
    if "percent" in spec:
        return float(spec["percent"])
    fraction = spec.get("fraction")
    if fraction:
        return 100.0 * float(fraction["numerator"]) / float(fraction.get("denominator", 100))
    return 100.0

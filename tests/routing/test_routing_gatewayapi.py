"""GatewayApiRouter: one rule's backendRef weights and RequestMirror filters; other rules and filters untouched."""

from __future__ import annotations

import pytest
from routing_objects import CHALLENGER, CHAMPION, NAMESPACE, THIRD, ValidatingFake, backend, http_route

from mlrollouts.api.spec import GatewayApiTraffic
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.gatewayapi import API_VERSION, GatewayApiRouter

HEADER_FILTER = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-exp", "value": "1"}]}}


def two_rules() -> list[dict]:
    """Rule 0 serves /admin from the champion only; rule 1 (managed) serves /predict with a header filter."""
    return [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}], "backendRefs": [backend("churn-v2")]},
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}],
            "filters": [HEADER_FILTER],
            "backendRefs": [backend("churn-v2", 1)],
            "timeouts": {"request": "5s"},
        },
    ]


def stored_rules(objects: ValidatingFake) -> list[dict]:
    return objects.stored(API_VERSION, "httproutes", NAMESPACE, "churn")["spec"]["rules"]


def router(objects: ValidatingFake, rule: int = 1, variants=None) -> GatewayApiRouter:
    config = GatewayApiTraffic(http_route="churn", rule=rule)
    return GatewayApiRouter(objects, NAMESPACE, variants or [CHAMPION, CHALLENGER], config)


async def test_weights_of_the_chosen_rule_only(objects: ValidatingFake) -> None:
    objects.add("httproutes", http_route(two_rules()))
    before = stored_rules(objects)

    applied = await router(objects).apply(Split({"churn-v2": 90, "churn-v3": 10}), None)

    after = stored_rules(objects)
    assert after[0] == before[0]
    assert after[1]["backendRefs"] == [backend("churn-v2", 90), backend("churn-v3", 10)]
    assert after[1]["filters"] == [HEADER_FILTER]
    assert after[1]["matches"] == before[1]["matches"] and after[1]["timeouts"] == {"request": "5s"}
    assert applied.split == Split({"churn-v2": 90, "churn-v3": 10})


async def test_apply_twice_is_one_write(objects: ValidatingFake) -> None:
    objects.add("httproutes", http_route(two_rules()))
    assert (await router(objects).apply(Split({"churn-v2": 50, "churn-v3": 50}), None)).changed
    first, writes = stored_rules(objects), objects.writes
    again = await router(objects).apply(Split({"churn-v2": 50, "churn-v3": 50}), None)
    assert stored_rules(objects) == first and objects.writes == writes and not again.changed


async def test_relative_weights_read_as_percentages(objects: ValidatingFake) -> None:
    """Gateway API weights are proportions, default 1: 3:1 is 75/25, a lone ref without weight is 100 %."""
    objects.add("httproutes", http_route([{"backendRefs": [backend("churn-v2", 3), backend("churn-v3", 1)]}]))
    assert (await router(objects, rule=0).current_split()).split == Split({"churn-v2": 75, "churn-v3": 25})
    objects.add("httproutes", http_route([{"backendRefs": [backend("churn-v2")]}]))
    assert (await router(objects, rule=0).current_split()).split == Split({"churn-v2": 100, "churn-v3": 0})


async def test_shadow_adds_request_mirror_filters_and_restore_removes_only_them(objects: ValidatingFake) -> None:
    objects.add("httproutes", http_route(two_rules()))
    r = router(objects, variants=[CHAMPION, CHALLENGER, THIRD])

    applied = await r.apply(Split({"churn-v2": 100}), Mirror(("churn-v3", "churn-v4"), 25))

    filters = stored_rules(objects)[1]["filters"]
    assert filters == [
        HEADER_FILTER,
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "churn-v3", "port": 8080}, "percent": 25}},
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "churn-v4", "port": 8080}, "percent": 25}},
    ]
    assert applied.mirror == Mirror(("churn-v3", "churn-v4"), 25)

    await r.restore()
    assert stored_rules(objects)[1]["filters"] == [HEADER_FILTER]
    current = await r.current_split()
    assert current.mirror is None and current.split == Split({"churn-v2": 100, "churn-v3": 0, "churn-v4": 0})


async def test_mirror_fraction_is_read_as_a_percentage(objects: ValidatingFake) -> None:
    mirror = {"backendRef": {"name": "churn-v3", "port": 8080}, "fraction": {"numerator": 1, "denominator": 4}}
    rule = {"backendRefs": [backend("churn-v2", 1)], "filters": [{"type": "RequestMirror", "requestMirror": mirror}]}
    objects.add("httproutes", http_route([rule]))
    assert (await router(objects, rule=0).current_split()).mirror == Mirror(("churn-v3",), 25)


async def test_rule_index_out_of_range_names_the_field(objects: ValidatingFake) -> None:
    objects.add("httproutes", http_route(two_rules()))
    with pytest.raises(RoutingError, match=r"spec.traffic.gatewayAPI.rule is 5 .* has 2 rule\(s\): .* 0 to 1"):
        await router(objects, rule=5).apply(Split({"churn-v2": 100}), None)


async def test_missing_route_names_the_field(objects: ValidatingFake) -> None:
    with pytest.raises(RoutingError, match=r"HTTPRoute ml/churn not found: .*spec.traffic.gatewayAPI.httpRoute"):
        await router(objects).current_split()


async def test_a_rule_without_ports_cannot_get_new_backends(objects: ValidatingFake) -> None:
    """Gateway API requires a port on Service backendRefs; there is none to copy, so nothing is written."""
    objects.add("httproutes", http_route([{"backendRefs": [{"name": "churn-v2"}]}]))
    before = stored_rules(objects)
    with pytest.raises(RoutingError, match="no backendRef with a port"):
        await router(objects, rule=0).apply(Split({"churn-v2": 90, "churn-v3": 10}), None)
    assert stored_rules(objects) == before


async def test_a_backend_in_another_namespace_is_not_a_variant(objects: ValidatingFake) -> None:
    foreign = {"name": "churn-v3", "namespace": "other", "port": 8080, "weight": 1}
    objects.add("httproutes", http_route([{"backendRefs": [backend("churn-v2", 1), foreign]}]))
    with pytest.raises(RoutingError, match=r"also sends to Service 'churn-v3'"):
        await router(objects, rule=0).apply(Split({"churn-v2": 90, "churn-v3": 10}), None)

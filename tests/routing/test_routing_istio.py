"""IstioRouter on an in-memory API: only the managed routes' weights and mirrors change, and they read back."""

from __future__ import annotations

import pytest
from routing_objects import (
    CHALLENGER,
    CHAMPION,
    NAMESPACE,
    THIRD,
    ValidatingFake,
    destination,
    managed_and_unmanaged_routes,
    virtual_service,
)

from mlrollouts.api.spec import IstioTraffic, Variant
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.istio import API_VERSION, IstioRouter

PREDICT_AND_EXPLAIN = IstioTraffic(virtual_service="churn", routes=["predict", "explain"])


def stored(objects: ValidatingFake, name: str = "churn") -> dict:
    return objects.stored(API_VERSION, "virtualservices", NAMESPACE, name)


def routes_by_name(objects: ValidatingFake) -> dict[str, dict]:
    return {route["name"]: route for route in stored(objects)["spec"]["http"]}


def router(objects: ValidatingFake, config: IstioTraffic = PREDICT_AND_EXPLAIN, variants=None) -> IstioRouter:
    return IstioRouter(objects, NAMESPACE, variants or [CHAMPION, CHALLENGER], config)


async def test_canary_step_changes_only_the_weights_of_the_managed_routes(objects: ValidatingFake) -> None:
    objects.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    before = routes_by_name(objects)

    applied = await router(objects).apply(Split({"churn-v2": 90, "churn-v3": 10}), None)

    assert applied.split == Split({"churn-v2": 90, "churn-v3": 10}) and applied.mirror is None
    after = routes_by_name(objects)
    assert after["admin"] == before["admin"]
    for name in ("predict", "explain"):
        # the challenger is added with the champion's port; nothing but the weights and that entry changes
        assert after[name]["route"] == [destination("churn-v2", 90), destination("churn-v3", 10)]
        assert {k: v for k, v in after[name].items() if k != "route"} == {
            k: v for k, v in before[name].items() if k != "route"
        }
    assert after["predict"]["retries"] == {"attempts": 2, "perTryTimeout": "1s", "retryOn": "5xx"}
    assert stored(objects)["spec"]["hosts"] == ["churn.ml.svc.cluster.local"]


async def test_apply_twice_writes_once_and_leaves_the_same_object(objects: ValidatingFake) -> None:
    objects.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    split = Split({"churn-v2": 75, "churn-v3": 25})
    assert (await router(objects).apply(split, None)).changed
    first, writes = stored(objects), objects.writes
    again = await router(objects).apply(split, None)
    assert stored(objects) == first and objects.writes == writes
    assert again.split == split and not again.changed


async def test_subsets_on_one_fqdn_host_are_told_apart(objects: ValidatingFake) -> None:
    host = "churn.ml.svc.cluster.local"
    objects.add(
        "virtualservices",
        virtual_service([{"name": "predict", "route": [destination(host, 100, "v2"), destination(host, 0, "v3")]}]),
    )
    variants = [
        Variant(name="churn-v2", service="churn", subset="v2"),
        Variant(name="churn-v3", service="churn", subset="v3"),
    ]

    await router(objects, IstioTraffic(virtual_service="churn"), variants).apply(
        Split({"churn-v2": 60, "churn-v3": 40}), None
    )

    assert routes_by_name(objects)["predict"]["route"] == [destination(host, 60, "v2"), destination(host, 40, "v3")]


async def test_without_route_names_every_route_to_the_champion_is_managed(objects: ValidatingFake) -> None:
    other = {"name": "legacy", "route": [destination("legacy-scorer.ml.svc.cluster.local")]}
    objects.add(
        "virtualservices",
        virtual_service([other, {"name": "predict", "route": [destination("churn-v2.ml.svc.cluster.local")]}]),
    )

    applied = await router(objects, IstioTraffic(virtual_service="churn")).apply(
        Split({"churn-v2": 95, "churn-v3": 5}), None
    )

    assert routes_by_name(objects)["legacy"] == other
    assert routes_by_name(objects)["predict"]["route"] == [
        destination("churn-v2.ml.svc.cluster.local", 95),
        destination("churn-v3", 5),
    ]
    assert applied.split == Split({"churn-v2": 95, "churn-v3": 5})


async def test_zero_weight_destinations_stay_so_a_later_step_can_raise_them(objects: ValidatingFake) -> None:
    objects.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    r = router(objects)
    await r.apply(Split({"churn-v2": 50, "churn-v3": 50}), None)
    await r.restore()
    assert routes_by_name(objects)["predict"]["route"] == [destination("churn-v2", 100), destination("churn-v3", 0)]
    assert (await r.current_split()).split == Split({"churn-v2": 100, "churn-v3": 0})


async def test_shadow_to_one_challenger_uses_mirror_and_mirror_percentage(objects: ValidatingFake) -> None:
    objects.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    r = router(objects)

    applied = await r.apply(Split({"churn-v2": 100}), Mirror(("churn-v3",), 30))

    predict = routes_by_name(objects)["predict"]
    assert predict["mirror"] == {"host": "churn-v3", "port": {"number": 8080}}
    assert predict["mirrorPercentage"] == {"value": 30.0}
    assert applied.mirror == Mirror(("churn-v3",), 30)
    assert "mirror" not in routes_by_name(objects)["admin"]

    await r.restore()
    predict = routes_by_name(objects)["predict"]
    assert "mirror" not in predict and "mirrorPercentage" not in predict
    assert (await r.current_split()).mirror is None


async def test_shadow_to_several_challengers_uses_the_mirrors_list(objects: ValidatingFake) -> None:
    objects.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    r = router(objects, variants=[CHAMPION, CHALLENGER, THIRD])

    applied = await r.apply(Split({"churn-v2": 100}), Mirror(("churn-v4", "churn-v3"), 100))

    assert routes_by_name(objects)["explain"]["mirrors"] == [
        {"destination": {"host": "churn-v3", "port": {"number": 8080}}, "percentage": {"value": 100.0}},
        {"destination": {"host": "churn-v4", "port": {"number": 8080}}, "percentage": {"value": 100.0}},
    ]
    assert applied.mirror == Mirror(("churn-v3", "churn-v4"), 100)
    assert "mirrors" in (applied.message or "")


async def test_a_user_mirror_to_another_service_is_kept(objects: ValidatingFake) -> None:
    audit = {"destination": {"host": "audit-log"}, "percentage": {"value": 5.0}}
    http = [{"name": "predict", "route": [destination("churn-v2", 100)], "mirrors": [audit]}]
    objects.add("virtualservices", virtual_service(http))
    r = router(objects, IstioTraffic(virtual_service="churn", routes=["predict"]))

    await r.apply(Split({"churn-v2": 100}), Mirror(("churn-v3",), 50))
    assert routes_by_name(objects)["predict"]["mirrors"][0] == audit
    assert len(routes_by_name(objects)["predict"]["mirrors"]) == 2
    await r.restore()
    assert routes_by_name(objects)["predict"]["mirrors"] == [audit]


async def test_current_split_sees_a_hand_edit_and_routes_that_disagree(objects: ValidatingFake) -> None:
    objects.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    r = router(objects)
    await r.apply(Split({"churn-v2": 90, "churn-v3": 10}), None)
    edited = stored(objects)
    edited["spec"]["http"][1]["route"] = [destination("churn-v2", 50), destination("churn-v3", 50)]
    await objects.replace(API_VERSION, "virtualservices", NAMESPACE, "churn", edited)

    current = await r.current_split()

    assert not current.consistent
    assert "predict: churn-v2 50%, churn-v3 50%" in (current.message or "")
    await r.apply(Split({"churn-v2": 90, "churn-v3": 10}), None)
    assert (await r.current_split()).consistent


async def test_missing_virtual_service_names_the_field(objects: ValidatingFake) -> None:
    with pytest.raises(RoutingError, match=r"VirtualService ml/churn not found: .*spec.traffic.istio.virtualService"):
        await router(objects).apply(Split({"churn-v2": 90, "churn-v3": 10}), None)


async def test_unknown_route_name_lists_the_routes_that_exist(objects: ValidatingFake) -> None:
    objects.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    before = stored(objects)
    config = IstioTraffic(virtual_service="churn", routes=["predict", "score"])
    with pytest.raises(RoutingError, match=r"spec.traffic.istio.routes names score.*admin, explain, predict"):
        await router(objects, config).apply(Split({"churn-v2": 90, "churn-v3": 10}), None)
    assert stored(objects) == before


async def test_a_managed_route_to_a_foreign_service_is_refused(objects: ValidatingFake) -> None:
    objects.add(
        "virtualservices",
        virtual_service([{"name": "predict", "route": [destination("churn-v2", 80), destination("rules", 20)]}]),
    )
    with pytest.raises(RoutingError, match=r"also sends to 'rules'"):
        await router(objects, IstioTraffic(virtual_service="churn")).apply(Split({"churn-v2": 100}), None)


async def test_a_concurrent_edit_is_retried_once_then_reported() -> None:

    class Contended(ValidatingFake):
        """Another writer bumps the object between our GET and PUT `conflicts` times."""

        conflicts = 1

        async def apply(self, api_version, plural, namespace, name, body, force=False):  # type: ignore[no-untyped-def]
            if self.conflicts > 0:
                self.conflicts -= 1
                current = self.stored(api_version, plural, namespace, name)
                current["metadata"].setdefault("labels", {})["touched"] = "yes"
                await super().replace(api_version, plural, namespace, name, current)
            return await super().apply(api_version, plural, namespace, name, body, force)

    contended = Contended()
    contended.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    applied = await router(contended).apply(Split({"churn-v2": 80, "churn-v3": 20}), None)
    assert applied.split == Split({"churn-v2": 80, "churn-v3": 20})
    assert stored(contended)["metadata"]["labels"] == {"touched": "yes"}

    contended.conflicts = 2
    with pytest.raises(RoutingError, match="kept changing"):
        await router(contended).apply(Split({"churn-v2": 70, "churn-v3": 30}), None)


async def test_a_write_that_does_not_stick_is_an_error() -> None:
    """E.g. a mutating webhook or controller that resets weights: the read-back catches it."""

    class Resetting(ValidatingFake):
        async def apply(self, api_version, plural, namespace, name, body, force=False):  # type: ignore[no-untyped-def]
            self.writes += 1
            return self.stored(api_version, plural, namespace, name)

    resetting = Resetting()
    resetting.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    with pytest.raises(RoutingError, match=r"does not hold the traffic just applied.*read back \{'churn-v2': 100"):
        await router(resetting).apply(Split({"churn-v2": 90, "churn-v3": 10}), None)


async def test_a_split_naming_an_unknown_variant_is_refused(objects: ValidatingFake) -> None:
    objects.add("virtualservices", virtual_service(managed_and_unmanaged_routes()))
    with pytest.raises(RoutingError, match="churn-v9"):
        await router(objects).apply(Split({"churn-v2": 90, "churn-v9": 10}), None)

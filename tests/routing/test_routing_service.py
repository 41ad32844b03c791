"""ServiceRouter: replicas in proportion to the split, with the split actually achieved reported."""

from __future__ import annotations

import pytest
from routing_objects import CHALLENGER, CHAMPION, NAMESPACE, THIRD, ValidatingFake, deployment

from mlrollouts.api.spec import ServiceTraffic, Variant
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.service import ServiceRouter
from mlrollouts.routing.weights import replica_counts


def replicas(objects: ValidatingFake, name: str) -> int:
    return objects.stored("apps/v1", "deployments", NAMESPACE, name)["spec"]["replicas"]


def router(objects: ValidatingFake, total: int = 10, variants=None) -> ServiceRouter:
    config = ServiceTraffic(name="churn", total_replicas=total)
    return ServiceRouter(objects, NAMESPACE, variants or [CHAMPION, CHALLENGER], config)


@pytest.fixture
def deployments(objects: ValidatingFake) -> ValidatingFake:
    objects.add("deployments", deployment("churn-v2", 10))
    objects.add("deployments", deployment("churn-v3", 0))
    return objects


async def test_a_split_finer_than_the_replicas_is_approximated_and_said_so(deployments: ValidatingFake) -> None:
    r = router(deployments)
    applied = await r.apply(Split({"churn-v2": 95, "churn-v3": 5}), None)

    assert (replicas(deployments, "churn-v2"), replicas(deployments, "churn-v3")) == (9, 1)
    assert applied.split == Split({"churn-v2": 90, "churn-v3": 10})
    assert applied.message == "10 replicas: 9/1 → 90/10, requested 95/5"
    # re-applying the same request is not drift, even though 90/10 != 95/5
    assert not (await r.apply(Split({"churn-v2": 95, "churn-v3": 5}), None)).changed


async def test_an_exact_split_reads_back_from_the_scale_subresources(deployments: ValidatingFake) -> None:
    r = router(deployments)
    applied = await r.apply(Split({"churn-v2": 70, "churn-v3": 30}), None)
    assert applied.split == Split({"churn-v2": 70, "churn-v3": 30}) and applied.changed
    assert (await r.current_split()).split == Split({"churn-v2": 70, "churn-v3": 30})
    writes = deployments.writes
    again = await r.apply(Split({"churn-v2": 70, "churn-v3": 30}), None)
    assert deployments.writes == writes and not again.changed


async def test_restore_scales_the_challenger_to_zero(deployments: ValidatingFake) -> None:
    r = router(deployments)
    await r.apply(Split({"churn-v2": 50, "churn-v3": 50}), None)
    await r.restore()
    assert (replicas(deployments, "churn-v2"), replicas(deployments, "churn-v3")) == (10, 0)


async def test_a_hand_scaled_deployment_shows_in_current_split(deployments: ValidatingFake) -> None:
    await deployments.patch("apps/v1", "deployments", NAMESPACE, "churn-v3", {"spec": {"replicas": 10}})
    current = await router(deployments).current_split()
    assert current.split == Split({"churn-v2": 50, "churn-v3": 50})
    assert current.message == "20 replicas: 10/10 → 50/50"


def test_every_variant_with_traffic_keeps_a_replica() -> None:
    assert replica_counts({"a": 99, "b": 1}, 10) == {"a": 9, "b": 1}
    assert replica_counts({"a": 98, "b": 1, "c": 1}, 10) == {"a": 8, "b": 1, "c": 1}
    assert replica_counts({"a": 100, "b": 0}, 4) == {"a": 4, "b": 0}
    # Hamilton's method on quotas 1.5/1.5: the tie goes to the first (the champion)
    assert replica_counts({"a": 50, "b": 50}, 3) == {"a": 2, "b": 1}
    with pytest.raises(RoutingError, match="raise totalReplicas to at least 3"):
        replica_counts({"a": 98, "b": 1, "c": 1}, 2)


async def test_mirroring_is_refused_without_touching_deployments(deployments: ValidatingFake) -> None:
    with pytest.raises(RoutingError, match="cannot mirror"):
        await router(deployments).apply(Split({"churn-v2": 100}), Mirror(("churn-v3",), 100))
    assert deployments.writes == 0


async def test_missing_deployment_names_the_variant_field(deployments: ValidatingFake) -> None:
    variants = [CHAMPION, CHALLENGER, Variant(name="churn-v4", service="churn-v4", deployment="churn-v4-gpu")]
    with pytest.raises(RoutingError, match=r"Deployment ml/churn-v4-gpu not found: .*spec.challengers\[1\].deployment"):
        await router(deployments, variants=variants).current_split()
    with pytest.raises(RoutingError, match=r"Deployment ml/churn-v4 not found: .*spec.challengers\[1\].service"):
        await router(deployments, variants=[CHAMPION, CHALLENGER, THIRD]).current_split()

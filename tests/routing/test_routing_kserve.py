"""KServe: the router moves only spec.predictor.canaryTrafficPercent, as KServe documents canary rollouts
(a step sets it, rollback pins it to 0, promotion removes it), every write valid against the KServe CRD."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from routing_objects import NAMESPACE, ValidatingFake

from mlrollouts.api.kserve import KServeTraffic
from mlrollouts.api.traffic import Variant
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.kserve import API_VERSION, PLURAL, KServeRouter
from schema_validation import validate_custom_object

CHAMPION = Variant(name="churn-v2", service="churn-predictor-00002")
CHALLENGER = Variant(name="churn-v3", service="churn-predictor-00003")


def inference_service(
    canary_percent: int | None = 0, *, ready: str = "churn-predictor-00003", rolled: str = "churn-predictor-00002"
) -> dict[str, Any]:
    """An InferenceService just updated to the new model, as KServe's status shows it during a canary."""
    predictor: dict[str, Any] = {
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://models/churn/v3"},
        "minReplicas": 1,
    }
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": "churn", "namespace": NAMESPACE},
        "spec": {"predictor": predictor},
        "status": {
            "components": {
                "predictor": {
                    "latestCreatedRevision": ready,
                    "latestReadyRevision": ready,
                    "latestRolledoutRevision": rolled,
                    "previousRolledoutRevision": "churn-predictor-00001",
                }
            }
        },
    }


def router(objects: ValidatingFake) -> KServeRouter:
    return KServeRouter(objects, NAMESPACE, [CHAMPION, CHALLENGER], KServeTraffic(inference_service="churn"))


def predictor(objects: ValidatingFake) -> dict[str, Any]:
    return objects.stored(API_VERSION, PLURAL, NAMESPACE, "churn")["spec"]["predictor"]


def split(challenger: int) -> Split:
    return Split({"churn-v2": 100 - challenger, "churn-v3": challenger})


async def test_steps_set_canary_traffic_percent_and_rollback_pins_it_to_zero(objects: ValidatingFake) -> None:
    objects.add(PLURAL, inference_service())
    kserve = router(objects)
    for step in (10, 25, 50):
        applied = await kserve.apply(split(step), None)
        assert applied.split == split(step) and applied.changed
        assert predictor(objects)["canaryTrafficPercent"] == step
        assert predictor(objects)["model"]["storageUri"] == "gs://models/churn/v3"  # nothing else touched
    assert not (await kserve.apply(split(50), None)).changed  # idempotent: no write
    await kserve.restore()
    assert predictor(objects)["canaryTrafficPercent"] == 0
    assert (await kserve.current_split()).split == split(0)


async def test_promotion_removes_canary_traffic_percent(objects: ValidatingFake) -> None:
    objects.add(PLURAL, inference_service(50))
    applied = await router(objects).apply(split(100), None)
    assert "canaryTrafficPercent" not in predictor(objects)
    assert applied.split == split(100) and "latest revision takes all traffic" in (applied.message or "")


async def test_a_hand_edit_is_seen_and_repaired(objects: ValidatingFake) -> None:
    objects.add(PLURAL, inference_service(20))
    kserve = router(objects)
    ops = [{"op": "replace", "path": "/spec/predictor/canaryTrafficPercent", "value": 70}]
    await objects.patch(API_VERSION, PLURAL, NAMESPACE, "churn", ops, patch_type="json")
    assert (await kserve.current_split()).split == split(70)
    assert (await kserve.apply(split(20), None)).changed
    assert predictor(objects)["canaryTrafficPercent"] == 20


@pytest.mark.parametrize(
    ("isvc", "named"),
    [
        (inference_service(ready="churn-predictor-00002"), "spec.challengers[0].service"),
        (inference_service(rolled="churn-predictor-00001"), "spec.champion.service"),
        (inference_service(rolled="churn-predictor-00003"), "canaryTrafficPercent: 0"),
    ],
    ids=["new revision not ready", "champion is not the rolled-out revision", "challenger already rolled out"],
)
async def test_revisions_that_do_not_match_the_variants_move_no_traffic(
    objects: ValidatingFake, isvc: dict[str, Any], named: str
) -> None:
    objects.add(PLURAL, isvc)
    objects.objects[(API_VERSION, PLURAL, NAMESPACE, "churn")]["spec"]["predictor"]["canaryTrafficPercent"] = 5
    with pytest.raises(RoutingError) as raised:
        await router(objects).apply(split(10), None)
    assert named in str(raised.value)
    assert predictor(objects)["canaryTrafficPercent"] == 5
    await router(objects).restore()  # rollback and deletion pin the rolled-out revision whatever the names
    assert predictor(objects)["canaryTrafficPercent"] == 0


async def test_after_promotion_kserve_moving_the_revisions_along_is_expected(objects: ValidatingFake) -> None:
    promoted = inference_service(None, rolled="churn-predictor-00003")
    promoted["status"]["components"]["predictor"]["previousRolledoutRevision"] = "churn-predictor-00002"
    objects.add(PLURAL, promoted)
    assert not (await router(objects).apply(split(100), None)).changed


async def test_kserve_cannot_mirror_and_a_missing_object_names_the_field(objects: ValidatingFake) -> None:
    with pytest.raises(RoutingError, match=r"spec\.traffic\.kserve\.inferenceService"):
        await router(objects).apply(split(10), None)
    objects.add(PLURAL, inference_service())
    with pytest.raises(RoutingError, match="KServe cannot mirror"):
        await router(objects).apply(split(0), Mirror(("churn-v3",), 100))


def test_the_kserve_schema_check_rejects_what_the_api_server_would() -> None:
    bad = inference_service()
    bad["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    with pytest.raises(jsonschema.ValidationError, match="'ten' is not of type 'integer'"):
        validate_custom_object(bad)

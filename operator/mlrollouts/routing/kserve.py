"""KServe: an InferenceService's `spec.predictor.canaryTrafficPercent`, as KServe documents canary rollouts.

KServe splits traffic between the previously rolled-out revision (the champion) and the latest ready revision
(the challenger) by that one number, so the router writes nothing else:

- a step: canaryTrafficPercent = the challenger's weight;
- rollback (and deletion of a running experiment): canaryTrafficPercent = 0, which pins all traffic to the
  previous revision;
- promotion (challenger 100 %): the field is removed, which is how KServe rolls the latest revision out.

The variants' `service` fields name the two revisions' predictor Services. When KServe's status names them
(status.components.predictor.latestRolledoutRevision / latestReadyRevision), they must agree: otherwise the
metrics would be read for one revision while another one takes the traffic. Writes are JSON patches guarded by
the resourceVersion read (RBAC: get and patch only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlrollouts.api.kserve import KServeTraffic
from mlrollouts.api.traffic import Variant
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import AppliedTraffic, RoutingError
from mlrollouts.routing.common import read_object, verify
from mlrollouts.routing.kube import ObjectClient, ObjectConflict
from mlrollouts.routing.weights import complete_split

API_VERSION = "serving.kserve.io/v1beta1"
PLURAL = "inferenceservices"
FIELD = "spec.traffic.kserve.inferenceService"
PERCENT_PATH = "/spec/predictor/canaryTrafficPercent"


class KServeRouter:
    def __init__(self, objects: ObjectClient, namespace: str, variants: Sequence[Variant], config: KServeTraffic):
        if len(variants) != 2:
            raise RoutingError("traffic.provider kserve splits between two revisions: use one challenger")
        self._objects, self._namespace, self._config = objects, namespace, config
        self._champion, self._challenger = variants
        self._names = [v.name for v in variants]
        self._what = f"InferenceService {namespace}/{config.inference_service}"

    async def current_split(self) -> AppliedTraffic:
        return self._split_of(await self._read())

    async def apply(self, split: Split, mirror: Mirror | None) -> AppliedTraffic:
        """Any split with traffic for the challenger first checks KServe's revisions against the variants;
        0 (rollback, deletion) never does: pinning the rolled-out revision is always safe, and a deleted
        experiment's finalizer must not wait on a revision check."""
        if mirror is not None and mirror.percent > 0:
            raise RoutingError(f"{self._what}: KServe cannot mirror requests; use strategy canary with provider kserve")
        weights = complete_split(split, self._names)
        percent = weights[self._challenger.name]
        changed = False
        for attempt in (1, 2):
            isvc = await self._read()
            if percent > 0:
                self._check_revisions(isvc, promoting=percent == 100)
            patch = self._patch(isvc, percent)
            if not patch:
                break
            guard = {"op": "test", "path": "/metadata/resourceVersion", "value": isvc["metadata"]["resourceVersion"]}
            try:
                await self._objects.patch(
                    API_VERSION, PLURAL, self._namespace, self._config.inference_service, [guard, *patch], "json"
                )
            except ObjectConflict:
                if attempt == 2:
                    raise RoutingError(
                        f"{self._what} kept changing while its canaryTrafficPercent was updated; "
                        "will retry at the next analysis interval"
                    ) from None
                continue
            changed = True
            break
        applied = verify(await self.current_split(), Split(weights), None, self._what)
        return AppliedTraffic(applied.split, None, applied.message, changed=changed)

    async def restore(self) -> None:
        await self.apply(Split.all_to(self._champion.name, self._names), None)

    async def _read(self) -> dict[str, Any]:
        isvc = await read_object(
            self._objects, API_VERSION, PLURAL, self._namespace, self._config.inference_service, FIELD
        )
        if not isinstance((isvc.get("spec") or {}).get("predictor"), dict):
            raise RoutingError(f"{self._what} has no spec.predictor: KServe canaries split the predictor's traffic")
        return isvc

    def _patch(self, isvc: dict[str, Any], percent: int) -> list[dict[str, Any]]:
        """The JSON patch that makes the predictor hold `percent` (nothing when it already does)."""
        current = isvc["spec"]["predictor"].get("canaryTrafficPercent")
        if percent == 100:  # promotion: KServe rolls the latest revision out when the field is removed
            return [{"op": "remove", "path": PERCENT_PATH}] if current is not None else []
        return [] if current == percent else [{"op": "add", "path": PERCENT_PATH, "value": percent}]

    def _split_of(self, isvc: dict[str, Any]) -> AppliedTraffic:
        percent = isvc["spec"]["predictor"].get("canaryTrafficPercent")
        challenger = 100 if percent is None else int(percent)
        message = (
            f"{self._what}: canaryTrafficPercent {percent}"
            if percent is not None
            else f"{self._what}: no canaryTrafficPercent (the latest revision takes all traffic)"
        )
        split = Split({self._champion.name: 100 - challenger, self._challenger.name: challenger})
        return AppliedTraffic(split, None, message)

    def _check_revisions(self, isvc: dict[str, Any], *, promoting: bool) -> None:
        """KServe's record of the revisions (PropagateStatus) must name the variants' Services.

        During a canary latestRolledoutRevision is the champion (the last revision that had 100 %) and
        latestReadyRevision the challenger. Once KServe has rolled the challenger out (a promotion, or a new
        model applied without canaryTrafficPercent), only a promotion may be re-applied: a smaller percent would
        split between the challenger and itself. A field KServe has not written yet is not checked.
        """
        predictor = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
        ready, rolled = predictor.get("latestReadyRevision"), predictor.get("latestRolledoutRevision")
        if ready and ready != self._challenger.service:
            raise RoutingError(
                f"{self._what} status.components.predictor.latestReadyRevision is {ready}, but "
                f"spec.challengers[0].service is {self._challenger.service}: wait until KServe has made "
                f"{self._challenger.service} ready, or set spec.challengers[0].service to {ready}"
            )
        if rolled == self._challenger.service and not promoting:
            raise RoutingError(
                f"{self._what} has already rolled out {rolled} (spec.challengers[0].service) to 100 %: apply the "
                "new model with spec.predictor.canaryTrafficPercent: 0 so KServe keeps the champion's revision, "
                "then restart the experiment"
            )
        if rolled and rolled not in (self._champion.service, self._challenger.service):
            raise RoutingError(
                f"{self._what} status.components.predictor.latestRolledoutRevision is {rolled}, but "
                f"spec.champion.service is {self._champion.service}: set spec.champion.service to {rolled} "
                "(the revision that served 100 % before the new model was applied)"
            )

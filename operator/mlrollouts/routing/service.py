"""No mesh: split by the ratio of replicas behind one Service, as Argo Rollouts does for a basic canary.

The Service selects the pods of every variant's Deployment, so traffic follows the replica counts. With N
replicas only multiples of 100/N are possible: the split actually achieved is reported, never the one asked.
Mirroring needs a proxy, so it is refused.

Replicas are written by server-side apply of the scale subresource (KubeObjects.apply_scale): field manager
`mlrollouts` owns `spec.replicas` and nothing else of the Deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from mlrollouts.api.spec import ServiceTraffic, Variant
from mlrollouts.engine.types import Mirror, Split
from mlrollouts.routing.base import AppliedTraffic, RoutingError
from mlrollouts.routing.common import verify
from mlrollouts.routing.kube import ObjectClient, ObjectNotFound
from mlrollouts.routing.weights import complete_split, percentages, replica_counts

logger = logging.getLogger(__name__)


class ServiceRouter:
    def __init__(
        self, objects: ObjectClient, namespace: str, variants: Sequence[Variant], config: ServiceTraffic
    ) -> None:
        self._objects, self._namespace, self._variants, self._config = objects, namespace, list(variants), config
        self._names = [v.name for v in self._variants]
        self._deployments = {v.name: v.deployment or v.service for v in self._variants}

    async def current_split(self) -> AppliedTraffic:
        replicas = {name: await self._get_scale(name) for name in self._names}
        total = sum(replicas.values())
        split = percentages(replicas, f"Deployments {', '.join(self._deployments.values())} (0 replicas in all)")
        return AppliedTraffic(split, None, f"{total} replicas: {_ratio(replicas)} → {_ratio(split.weights)}")

    async def apply(self, split: Split, mirror: Mirror | None) -> AppliedTraffic:
        if mirror is not None and mirror.percent > 0 and mirror.targets:
            raise RoutingError(
                "traffic.provider service cannot mirror traffic (there is no proxy to copy requests): "
                "use istio, gatewayAPI or gateway for shadow experiments"
            )
        weights = complete_split(split, self._names)
        total = self._config.total_replicas
        replicas = replica_counts(weights, total)
        achieved = percentages(replicas, "replica plan")
        changed = False
        # Scale up before scaling down so the Service never runs out of ready pods mid-change.
        for name in sorted(self._names, key=lambda n: -replicas[n]):
            current = await self._get_scale(name)
            if current != replicas[name]:
                changed = True
                await self._objects.apply_scale(self._namespace, self._deployments[name], replicas[name])
                logger.info(
                    "routing scaled deployment=%s/%s replicas=%d->%d",
                    self._namespace,
                    self._deployments[name],
                    current,
                    replicas[name],
                )
        read_back = verify(await self.current_split(), achieved, None, f"Deployments of {', '.join(self._names)}")
        message = (
            f"{total} replicas: {_ratio(replicas)} → {_ratio(achieved.weights)}, requested {_ratio(weights)}"
            if achieved.weights != weights
            else read_back.message
        )
        return AppliedTraffic(read_back.split, None, message, changed=changed)

    async def restore(self) -> None:
        await self.apply(Split.all_to(self._names[0], self._names), None)

    async def _get_scale(self, name: str) -> int:
        try:
            return await self._objects.get_scale(self._namespace, self._deployments[name])
        except ObjectNotFound as error:
            field = "deployment" if self._variants[self._names.index(name)].deployment else "service"
            role = "champion" if name == self._names[0] else f"challengers[{self._names.index(name) - 1}]"
            raise RoutingError(f"{error}: create it or fix spec.{role}.{field}") from None


def _ratio(values: Mapping[str, int]) -> str:
    return "/".join(str(v) for v in values.values())

"""The ObjectClient every tick writes through: refused writes are counted, and with sharding no write leaves
a replica for a shard whose Lease it can no longer prove it holds (see sharding.ShardManager.check_write).
"""

from __future__ import annotations

from typing import Any

from mlrollouts.controller import shard_metrics
from mlrollouts.controller.sharding import LeaseLost, ShardManager
from mlrollouts.routing.kube import ObjectClient, ObjectConflict, PatchType


class GuardedObjects:
    """Wraps an ObjectClient; reads pass straight through, writes are checked first and their refusals counted."""

    def __init__(self, inner: ObjectClient, shards: ShardManager | None = None) -> None:
        self._inner, self._shards = inner, shards

    def __getattr__(self, name: str) -> Any:  # read_path, close and the like: passed through
        return getattr(self._inner, name)

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return await self._inner.get(api_version, plural, namespace, name)

    async def get_scale(self, namespace: str, name: str) -> int:
        return await self._inner.get_scale(namespace, name)

    def _check(self) -> None:
        if self._shards is not None:
            self._shards.check_write()

    async def patch(
        self,
        api_version: str,
        plural: str,
        namespace: str,
        name: str,
        body: Any,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        metadata_only: bool = False,
    ) -> dict[str, Any]:
        self._check()
        resource = f"{plural}/{subresource}" if subresource else plural
        try:
            return await self._inner.patch(
                api_version, plural, namespace, name, body, patch_type, subresource, metadata_only=metadata_only
            )
        except LeaseLost:  # stopped right before sending (see KubeObjects.write_check): not sent, so not refused
            raise
        except ObjectConflict:
            shard_metrics.write_conflicts.labels(resource).inc()
            raise

    async def replace(
        self, api_version: str, plural: str, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self._check()
        try:
            return await self._inner.replace(api_version, plural, namespace, name, body)
        except LeaseLost:  # stopped right before sending (see KubeObjects.write_check): not sent, so not refused
            raise
        except ObjectConflict:
            shard_metrics.write_conflicts.labels(plural).inc()
            raise

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        return await self._inner.create(api_version, plural, namespace, body)

    async def patch_scale(self, namespace: str, name: str, replicas: int) -> int:
        self._check()
        return await self._inner.patch_scale(namespace, name, replicas)

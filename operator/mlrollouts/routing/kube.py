"""A tiny async client for the few Kubernetes objects the routers read and write.

Built on the official client's low-level `ApiClient` (one code path for every group, core included) and run
in a thread, so the kopf event loop never blocks. API errors become RoutingErrors that name the object.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

import kubernetes.client
import kubernetes.config

from mlrollouts.routing.base import RoutingError

logger = logging.getLogger(__name__)

PatchType = Literal["merge", "json"]
_CONTENT_TYPES = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}
KINDS = {"virtualservices": "VirtualService", "httproutes": "HTTPRoute", "deployments": "Deployment"}


class ObjectNotFound(RoutingError):
    """The object a router manages does not exist; routers add which spec field names it."""

    def __init__(self, plural: str, namespace: str, name: str) -> None:
        self.plural, self.namespace, self.name = plural, namespace, name
        super().__init__(f"{KINDS.get(plural, plural)} {namespace}/{name} not found")


class ObjectConflict(RoutingError):
    """Someone else changed the object since it was read (HTTP 409, or a failed JSON-patch `test`); re-read."""


class ApiRequestFailed(RoutingError):
    """The API server refused a request; `http_status` tells a conflict (422 on a `test` op) from the rest."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


def describe(plural: str, namespace: str, name: str) -> str:
    return f"{KINDS.get(plural, plural)} {namespace}/{name}"


class ObjectClient(Protocol):
    """What routers need from the API server; `KubeObjects` talks HTTP, `FakeKubeObjects` keeps a dict."""

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]: ...

    async def patch(
        self,
        api_version: str,
        plural: str,
        namespace: str,
        name: str,
        body: Any,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]: ...

    async def replace(
        self, api_version: str, plural: str, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def get_scale(self, namespace: str, name: str) -> int: ...

    async def patch_scale(self, namespace: str, name: str, replicas: int) -> int: ...


def object_path(api_version: str, plural: str, namespace: str, name: str, subresource: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")
    return f"{path}/{subresource}" if subresource else path


class KubeObjects:
    """ObjectClient over HTTP with the official kubernetes client."""

    def __init__(self, configuration: kubernetes.client.Configuration, timeout_seconds: float = 10.0) -> None:
        self._api = kubernetes.client.ApiClient(configuration)
        self._timeout = timeout_seconds
        self.write_check: Callable[[], None] | None = None
        """Called in the worker thread right before a write is sent (active-active: the shard Lease is still held
        after any wait for a free thread); raising stops the write."""

    @classmethod
    def from_kubeconfig(cls, path: str, context: str | None = None) -> KubeObjects:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        return cls(configuration)

    def close(self) -> None:
        self._api.close()

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return await self._call("GET", api_version, plural, namespace, name)

    async def patch(
        self,
        api_version: str,
        plural: str,
        namespace: str,
        name: str,
        body: Any,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        try:
            return await self._call(
                "PATCH", api_version, plural, namespace, name, body, _CONTENT_TYPES[patch_type], subresource=subresource
            )
        except ApiRequestFailed as error:
            guarded = patch_type == "json" and any(op.get("op") == "test" for op in body)
            # 422 is the API server's answer to a failed `test` op, and also to a schema violation ("X is invalid:
            # [field: ...]"), which is no conflict: re-reading would not help, and the refusal counter must not count it
            if guarded and error.http_status == 422 and " is invalid: " not in str(error):
                raise ObjectConflict(
                    f"{describe(plural, namespace, name)} changed since it was read: {error}"
                ) from error
            raise

    async def replace(
        self, api_version: str, plural: str, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._call("PUT", api_version, plural, namespace, name, body, "application/json")

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the collection (used for Events); `body.metadata.name` names the new object."""
        return await self._call("POST", api_version, plural, namespace, "", body, "application/json")

    async def get_scale(self, namespace: str, name: str) -> int:
        scale = await self._call("GET", "apps/v1", "deployments", namespace, name, subresource="scale")
        return int((scale.get("spec") or {}).get("replicas") or 0)

    async def patch_scale(self, namespace: str, name: str, replicas: int) -> int:
        body = {"spec": {"replicas": replicas}}
        scale = await self._call(
            "PATCH", "apps/v1", "deployments", namespace, name, body, _CONTENT_TYPES["merge"], subresource="scale"
        )
        return int((scale.get("spec") or {}).get("replicas") or 0)

    async def read_path(self, path: str) -> tuple[int, Any]:
        """GET any API path: (HTTP status, body). The operator's readiness check lists its experiments with it."""
        return await asyncio.to_thread(self._request, "GET", path, None, None)

    async def _call(
        self,
        method: str,
        api_version: str,
        plural: str,
        namespace: str,
        name: str,
        body: Any = None,
        content_type: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = object_path(api_version, plural, namespace, name, subresource)
        status, data = await asyncio.to_thread(self._request, method, path, body, content_type)
        logger.debug("kube request method=%s path=%s status=%s", method, path, status)
        if status == 404:
            raise ObjectNotFound(plural, namespace, name)
        if status == 409:
            raise ObjectConflict(f"{describe(plural, namespace, name)} changed while it was being updated")
        if not 200 <= status < 300:
            detail = data.get("message") if isinstance(data, dict) else None
            raise ApiRequestFailed(
                f"{method} {describe(plural, namespace, name)} failed with HTTP {status}: {detail or data}", status
            )
        return data

    def _request(self, method: str, path: str, body: Any, content_type: str | None) -> tuple[int, Any]:
        if method != "GET" and self.write_check is not None:
            self.write_check()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, _ = self._api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self._api.call_api(method, url, header_params=headers, body=body, _request_timeout=self._timeout)
        except Exception as error:  # urllib3 connection errors: the API server is unreachable
            raise RoutingError(f"{method} {path}: Kubernetes API unreachable: {error}") from error
        response.read()
        raw = response.data or b"{}"
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

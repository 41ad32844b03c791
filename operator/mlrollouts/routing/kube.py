"""A tiny async client for the few Kubernetes objects the routers read and write.

Not hand-written HTTP: the official `kubernetes` client's asyncio flavour (`kubernetes.aio`, the same
package) does the transport on aiohttp, TLS, client certificates, exec plugins and token refresh
(`load_kube_config` / `load_incluster_config`). It stays a thin
generic layer over `ApiClient.call_api` rather than the typed `CustomObjectsApi`/`AppsV1Api` because the
routers address objects of several groups (core, apps, Istio, Gateway API) by `(apiVersion, plural)`, need
the raw status code to tell 404/409/422 apart (a failed JSON-patch `test` is a conflict, not an error), and the
typed methods would turn each of those into a different model class or exception shape. Calls run on the event
loop (no worker thread to queue for: at 50 ticks/s the default pool was the bottleneck, benchmarks/results/
scaling.md); API errors become RoutingErrors that name the object.

Route writes are server-side apply (`apply`, `apply_scale`) as field manager `mlrollouts`, so
`metadata.managedFields` says which fields the operator owns (what Argo CD's `managedFieldsManagers` reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

import aiohttp
import kubernetes.aio.client

from mlrollouts.routing.base import RoutingError
from mlrollouts.routing.kubeconfig import aio_configuration

logger = logging.getLogger(__name__)

PatchType = Literal["merge", "json"]
_CONTENT_TYPES = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"  # JSON is YAML: the client sends the dict as JSON
JSON = "application/json"
METADATA_ONLY = f"{JSON};as=PartialObjectMetadata;g=meta.k8s.io;v=v1, {JSON}"
"""The API server answers with the object's metadata only (server-side conversion to PartialObjectMetadata); one
that cannot, with the whole object."""
FIELD_MANAGER = "mlrollouts"
MAX_IN_FLIGHT = 32
"""Requests one client has open at once (its connection pool): thousands of experiments ticking together queue
for a slot rather than all waiting on the API server at once, each against its own timeout."""
KINDS = {
    "virtualservices": "VirtualService",
    "httproutes": "HTTPRoute",
    "deployments": "Deployment",
    "inferenceservices": "InferenceService",
}


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


class ApiUnreachable(RoutingError):
    """No answer from the API server: refused connection, broken connection, or the client's timeout."""


TRANSIENT_HTTP = frozenset({429, 500, 502, 503, 504})
"""Answers a loaded or restarting API server gives (throttled, timed out, etcd unavailable): retry later."""


def is_transient(error: BaseException) -> bool:
    """The API server, not the request, failed: the same request can succeed later unchanged."""
    return isinstance(error, ApiUnreachable) or (
        isinstance(error, ApiRequestFailed) and error.http_status in TRANSIENT_HTTP
    )


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
        metadata_only: bool = False,
    ) -> dict[str, Any]: ...

    async def replace(
        self, api_version: str, plural: str, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def apply(
        self, api_version: str, plural: str, namespace: str, name: str, body: dict[str, Any], force: bool = False
    ) -> dict[str, Any]: ...

    async def get_scale(self, namespace: str, name: str) -> int: ...

    async def apply_scale(self, namespace: str, name: str, replicas: int) -> int: ...


def object_path(api_version: str, plural: str, namespace: str, name: str, subresource: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")
    return f"{path}/{subresource}" if subresource else path


class KubeObjects:
    """ObjectClient over HTTP with the official kubernetes client's asyncio flavour (`kubernetes.aio`): aiohttp
    on the caller's event loop, no worker threads (a tick's GET and PATCH used to queue on the default pool)."""

    def __init__(self, configuration: kubernetes.aio.client.Configuration, timeout_seconds: float = 10.0) -> None:
        self._configuration = configuration
        self._clients: dict[asyncio.AbstractEventLoop, kubernetes.aio.client.ApiClient] = {}
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        configuration.connection_pool_maxsize = MAX_IN_FLIGHT
        # No proxy or .netrc from the environment, as kopf's own client to the same API server (its watches)
        # has none: with trust_env on, aiohttp looked both up in worker threads on every request.
        extra = getattr(configuration, "client_session_kwargs", None) or {}
        configuration.client_session_kwargs = {**extra, "trust_env": False}
        self._timeout = timeout_seconds
        self.write_check: Callable[[], None] | None = None
        """Called right before a write is sent (active-active: the shard Lease is still held after any wait for
        a free connection or a token refresh); raising stops the write."""

    @classmethod
    def from_kubeconfig(cls, path: str, context: str | None = None) -> KubeObjects:
        return cls(aio_configuration(path, context))

    def _client(self) -> tuple[kubernetes.aio.client.ApiClient, asyncio.Semaphore]:
        """One client (one aiohttp session) per event loop: the operator has one; tests may run several."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for old in [old for old in self._clients if old.is_closed()]:
                _abandon(self._clients.pop(old))
                self._slots.pop(old, None)
            client = self._clients[loop] = kubernetes.aio.client.ApiClient(self._configuration)
            self._slots[loop] = asyncio.Semaphore(MAX_IN_FLIGHT)
        return client, self._slots[loop]

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def close(self) -> None:
        """From outside any event loop: close each session (one whose loop has ended, as best it can)."""
        for loop, client in list(self._clients.items()):
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(client.close())
            else:
                _abandon(client)
        self._clients.clear()

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
        metadata_only: bool = False,
    ) -> dict[str, Any]:
        """`metadata_only`: the answer is the written object's metadata alone (all a status write reads back)."""
        accept = METADATA_ONLY if metadata_only else JSON
        try:
            return await self._call(
                "PATCH",
                api_version,
                plural,
                namespace,
                name,
                body,
                _CONTENT_TYPES[patch_type],
                subresource=subresource,
                accept=accept,
            )
        except ApiRequestFailed as error:
            guarded = patch_type == "json" and any(op.get("op") == "test" for op in body)
            # A failed `test` op is a bare 422; a 422 saying "is invalid" is the schema refusing the new value,
            # which re-reading cannot fix (taken for a conflict, it was retried every 0.2 s, forever).
            if guarded and error.http_status == 422 and "is invalid" not in str(error):
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

    async def apply(
        self, api_version: str, plural: str, namespace: str, name: str, body: dict[str, Any], force: bool = False
    ) -> dict[str, Any]:
        """Server-side apply of `body` (apiVersion, kind, metadata.name and only the fields we own).

        A `metadata.resourceVersion` in `body` is a precondition: 409 (ObjectConflict) when the object changed
        since it was read. The API server would still *create* a missing object from an apply (the routers'
        partial body, e.g. a VirtualService with only spec.http), so an apply that answers 201 is undone
        (DELETE with the new object's UID as precondition) and reported as ObjectNotFound. `force` takes the
        fields over from another manager instead of a 409 field conflict.
        """
        status, data = await self._call_status(
            "PATCH", api_version, plural, namespace, name, body, APPLY_CONTENT_TYPE, force=force
        )
        if status == 201:
            uid = (data.get("metadata") or {}).get("uid")
            path = object_path(api_version, plural, namespace, name)
            undo = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
            await self._request("DELETE", path, undo, "application/json", [])
            logger.warning("kube apply created a deleted object; removed it again object=%s", path)
            raise ObjectNotFound(plural, namespace, name)
        return data

    async def get_scale(self, namespace: str, name: str) -> int:
        scale = await self._call("GET", "apps/v1", "deployments", namespace, name, subresource="scale")
        return int((scale.get("spec") or {}).get("replicas") or 0)

    async def apply_scale(self, namespace: str, name: str, replicas: int) -> int:
        """Server-side apply of the scale subresource: field manager `mlrollouts` owns spec.replicas only, and a
        missing Deployment is a 404 (a subresource apply never creates). Forced: the Deployment's author set
        spec.replicas when creating it (as with an HPA: leave replicas out of the manifest in Git)."""
        body = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name, "namespace": namespace}}
        body["spec"] = {"replicas": replicas}
        scale = await self._call(
            "PATCH", "apps/v1", "deployments", namespace, name, body, APPLY_CONTENT_TYPE, "scale", force=True
        )
        return int((scale.get("spec") or {}).get("replicas") or 0)

    async def read_path(self, path: str) -> tuple[int, Any]:
        """GET any API path: (HTTP status, body). The operator's readiness check lists its experiments with it."""
        return await self._request("GET", path, None, None, [])

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
        force: bool = False,
        accept: str = JSON,
    ) -> dict[str, Any]:
        _, data = await self._call_status(
            method, api_version, plural, namespace, name, body, content_type, subresource, force, accept
        )
        return data

    async def _call_status(
        self,
        method: str,
        api_version: str,
        plural: str,
        namespace: str,
        name: str,
        body: Any = None,
        content_type: str | None = None,
        subresource: str | None = None,
        force: bool = False,
        accept: str = JSON,
    ) -> tuple[int, dict[str, Any]]:
        path = object_path(api_version, plural, namespace, name, subresource)
        query: list[tuple[str, str]] = []
        if content_type == APPLY_CONTENT_TYPE:  # required by apply; other writes keep the client's default name
            query.append(("fieldManager", FIELD_MANAGER))
        if force:
            query.append(("force", "true"))
        status, data = await self._request(method, path, body, content_type, query, accept)
        logger.debug("kube request method=%s path=%s status=%s", method, path, status)
        detail = data.get("message") if isinstance(data, dict) else None
        if status == 404:
            raise ObjectNotFound(plural, namespace, name)
        if status == 409:
            raise ObjectConflict(f"{describe(plural, namespace, name)} changed while it was being updated: {detail}")
        if not 200 <= status < 300:
            raise ApiRequestFailed(
                f"{method} {describe(plural, namespace, name)} failed with HTTP {status}: {detail or data}", status
            )
        return status, data

    async def _request(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str | None,
        query: list[tuple[str, str]],
        accept: str = JSON,
    ) -> tuple[int, Any]:
        api, slots = self._client()
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        async with slots:  # queued here, not in aiohttp's pool, so the timeout counts the request alone
            # The body is left out of param_serialize: ours are plain JSON already (no client models, no
            # datetimes), and its sanitize_for_serialization walked every leaf of each status again per write.
            method, url, headers, _, _ = await api.param_serialize(
                method, path, query_params=query, header_params=headers, auth_settings=["BearerToken"]
            )
            if method != "GET" and self.write_check is not None:
                self.write_check()  # after the wait for a slot: a Lease that lapsed meanwhile stops the write
            try:
                response = await api.call_api(
                    method, url, header_params=headers, body=body, _request_timeout=self._timeout
                )
                raw = await response.read() or b"{}"
            except (aiohttp.ClientError, TimeoutError, OSError) as error:  # the API server is unreachable
                reason = str(error) or type(error).__name__
                raise ApiUnreachable(f"{method} {path}: Kubernetes API unreachable: {reason}") from error
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")


def _abandon(client: kubernetes.aio.client.ApiClient) -> None:
    """Close the connections of a session whose event loop has ended (asyncio.run in tests and the CLI): it can
    no longer be awaited, and left open it is reported as an unclosed session when collected."""
    session = client.rest_client.pool_manager
    if session is not None and session.connector is not None:
        with contextlib.suppress(RuntimeError):  # the ended loop's transports may refuse; they are gone anyway
            session.connector._close(abort_ssl=True)  # the synchronous part of aiohttp's close (nothing to await)

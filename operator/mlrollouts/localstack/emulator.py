"""The emulated Kubernetes API server: kmock's `KubernetesEmulator` with a real server's behaviour.

kmock serves discovery and keeps objects; resource requests are answered here so that kopf and kubectl
see what a real API server would do (see `semantics` and `store` for the rules). This is an emulator for
demos and tests; production runs on a real cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from mlrollouts.localstack.registry import Registry
from mlrollouts.localstack.selectors import SelectorError, object_filter
from mlrollouts.localstack.semantics import ApiError, ResourceSpec, decode_body, patched
from mlrollouts.localstack.store import Store
from mlrollouts.localstack.tables import render_table, wants_table
from mlrollouts.localstack.watch import ChangeLog, TooOldResourceVersion, Watcher

logger = logging.getLogger(__name__)

_RESOURCE_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?/?$"
)


@dataclass(frozen=True)
class Target:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_target(path: str) -> Target | None:
    """The resource a request addresses, or None for discovery and other non-resource paths."""
    match = _RESOURCE_PATH.match(path)
    if match is None:
        return None
    parts = match.groupdict()
    group, version = ("", "v1") if parts["core"] else (parts["group"], parts["version"])
    namespace, plural, name, sub = parts["namespace"], parts["plural"], parts["name"], parts["sub"]
    if namespace is not None and name is None and sub is None and plural in ("status", "finalize") and not group:
        # /api/v1/namespaces/NAME/status addresses the namespace's own subresource.
        namespace, plural, name, sub = None, "namespaces", namespace, plural
    return Target(group, version, plural, namespace, name, sub)


def _json(data: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(data), status=status, content_type="application/json")


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    """A KubernetesEmulator that kopf and kubectl can drive like a real API server."""

    registry: Registry = attrs.field(init=False)
    store: Store = attrs.field(init=False)
    changes: ChangeLog = attrs.field(factory=ChangeLog, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.registry = Registry(self.resources)
        self.store = Store(self.objects, self.registry, self.changes)
        self.store.create(self.registry.lookup("", "v1", "namespaces"), None, {"metadata": {"name": "default"}})

    def install_crd(self, crd: Mapping[str, Any]) -> dict[str, Any]:
        """Create (or replace) a CustomResourceDefinition object; its resources become served at once."""
        spec = self.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        name = (crd.get("metadata") or {}).get("name", "")
        existing = self.store.get(spec, None, name)
        if existing is None:
            return self.store.create(spec, None, crd)
        return self.store.update(spec, None, name, {**crd, "metadata": existing["metadata"]}, None)

    def ensure_namespace(self, name: str) -> dict[str, Any]:
        spec = self.registry.lookup("", "v1", "namespaces")
        return self.store.get(spec, None, name) or self.store.create(spec, None, {"metadata": {"name": name}})

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        # kmock reports the core group as "/v1", which kubectl cannot map.
        payload = await super()._serve_version(request)
        if isinstance(payload, dict):
            if payload.get("groupVersion") == "/v1":
                payload["groupVersion"] = "v1"
            for entry in payload.get("resources", []):
                if "/" in entry["name"]:  # subresources carry no short names (kubectl warns otherwise)
                    entry.update(shortNames=[], categories=[], verbs=["get", "patch", "update"])
        return payload

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        target = parse_target(raw_request.path)
        if target is None:
            return await super().__call__(raw_request)
        try:
            return await self._serve_resource(raw_request, target)
        except ApiError as error:
            return _json(error.status(), error.code)
        except SelectorError as error:
            return _json(ApiError(400, "BadRequest", str(error)).status(), 400)
        except Exception as error:  # answered as a Status so clients show it instead of hanging
            logger.exception("emulator request failed method=%s path=%s", raw_request.method, raw_request.path)
            return _json(ApiError(500, "InternalError", repr(error)).status(), 500)

    async def _serve_resource(self, raw: aiohttp.web.BaseRequest, target: Target) -> aiohttp.web.StreamResponse:
        spec = self.registry.lookup(target.group, target.version, target.plural)
        if target.namespace is not None and not spec.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if target.subresource and target.subresource not in spec.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = target.namespace if spec.namespaced else None
        params, method = raw.query, raw.method
        if method == "GET" and params.get("watch") in ("true", "1"):
            return await self._watch(raw, spec, namespace, target.name)
        if method == "GET" and target.name is None:
            return self._list(raw, spec, namespace)
        if method == "GET":
            return self._respond(raw, spec, self._read(spec, namespace, target))
        body = await raw.read()
        content_type = raw.headers.get("Content-Type", "application/json")
        data = decode_body(body, content_type) if method in ("POST", "PUT", "PATCH") else None
        dry_run = bool(params.get("dryRun"))  # kubectl diff and --dry-run=server: answer, store nothing
        if method == "POST" and target.name is None:
            return _json(self.store.create(spec, namespace, data, dry_run), 201)
        if method == "PUT" and target.name:
            return _json(self._write(spec, namespace, target, lambda current: data, dry_run))
        if method == "PATCH" and target.name:
            return self._patch(spec, namespace, target, data, content_type, dry_run)
        if method == "DELETE" and target.name:
            return _json(self.store.delete(spec, namespace, target.name, dry_run))
        if method == "DELETE":
            accepts = object_filter(params.get("labelSelector"), params.get("fieldSelector"))
            for obj in self.store.list(spec, namespace, accepts):
                self.store.delete(spec, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            return _json({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"})
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {raw.path}")

    def _read(self, spec: ResourceSpec, namespace: str | None, target: Target) -> dict[str, Any]:
        obj = self.store.require(spec, namespace, target.name or "")
        return _as_scale(obj) if target.subresource == "scale" else obj

    def _write(
        self, spec: ResourceSpec, namespace: str | None, target: Target, change: Any, dry_run: bool
    ) -> dict[str, Any]:
        """Apply `change(current) -> proposed` to the object or to its scale subresource."""
        name = target.name or ""
        current = self.store.require(spec, namespace, name)
        if target.subresource == "scale":
            scale = change(_as_scale(current))
            replicas = (scale.get("spec") or {}).get("replicas")
            proposed = {**current, "spec": {**current.get("spec", {}), "replicas": replicas}}
            proposed["metadata"] = {**current["metadata"], **_version_of(scale)}
            return _as_scale(self.store.update(spec, namespace, name, proposed, None, dry_run))
        return self.store.update(spec, namespace, name, change(current), target.subresource, dry_run)

    def _patch(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        target: Target,
        data: Any,
        content_type: str,
        dry_run: bool,
    ) -> aiohttp.web.Response:
        if "apply-patch" in content_type and self.store.get(spec, namespace, target.name or "") is None:
            if target.subresource:
                raise spec.not_found(target.name or "")
            body = {**data, "metadata": {**(data.get("metadata") or {}), "name": target.name}}
            return _json(self.store.create(spec, namespace, body, dry_run), 201)
        change = lambda current: patched(current, data, content_type)  # noqa: E731
        return _json(self._write(spec, namespace, target, change, dry_run))

    def _respond(self, raw: aiohttp.web.BaseRequest, spec: ResourceSpec, obj: dict[str, Any]) -> aiohttp.web.Response:
        if wants_table(raw.headers.get("Accept")):
            include = raw.query.get("includeObject")
            return _json(render_table([obj], spec.printer_columns, str(self.store.revision), include))
        return _json(obj)

    def _list(self, raw: aiohttp.web.BaseRequest, spec: ResourceSpec, namespace: str | None) -> aiohttp.web.Response:
        accepts = object_filter(raw.query.get("labelSelector"), raw.query.get("fieldSelector"))
        items = self.store.list(spec, namespace, accepts)
        revision = str(self.store.revision)
        if wants_table(raw.headers.get("Accept")):
            return _json(render_table(items, spec.printer_columns, revision, raw.query.get("includeObject")))
        return _json(
            {
                "apiVersion": spec.api_version,
                "kind": f"{spec.kind}List",
                "metadata": {"resourceVersion": revision},
                "items": items,
            }
        )

    async def _watch(
        self, raw: aiohttp.web.BaseRequest, spec: ResourceSpec, namespace: str | None, name: str | None
    ) -> aiohttp.web.StreamResponse:
        field_selector = raw.query.get("fieldSelector") or ""
        if name:
            field_selector = ",".join(filter(None, [field_selector, f"metadata.name={name}"]))
        if namespace:
            field_selector = ",".join(filter(None, [field_selector, f"metadata.namespace={namespace}"]))
        accepts = object_filter(raw.query.get("labelSelector"), field_selector)
        since_text = raw.query.get("resourceVersion") or ""
        since = int(since_text) if since_text.isdigit() and since_text != "0" else None
        table = wants_table(raw.headers.get("Accept"))
        watcher = Watcher((spec.group, spec.version, spec.plural), accepts)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            backlog = self.changes.subscribe(watcher, since)
        except TooOldResourceVersion as error:
            backlog, gone = [], ApiError(410, "Expired", str(error)).status()
            await response.prepare(raw)
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return response
        try:
            if since is None:
                initial = [("ADDED", obj) for obj in self.store.list(spec, namespace, accepts)]
            else:
                initial = [(event.type, event.object) for event in backlog]
            await response.prepare(raw)
            for kind, obj in initial:
                await self._send(response, spec, kind, obj, table, raw.query.get("includeObject"))
            timeout = float(raw.query.get("timeoutSeconds") or 0) or None
            deadline = asyncio.get_running_loop().time() + timeout if timeout else None
            while True:
                remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if event is None:
                    break
                await self._send(response, spec, event.type, event.object, table, raw.query.get("includeObject"))
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            self.changes.unsubscribe(watcher)
        return response

    async def _send(
        self,
        response: aiohttp.web.StreamResponse,
        spec: ResourceSpec,
        kind: str,
        obj: Mapping[str, Any],
        table: bool,
        include: str | None,
    ) -> None:
        payload: Mapping[str, Any] = obj
        if table:
            payload = render_table([obj], spec.printer_columns, obj["metadata"]["resourceVersion"], include)
        await response.write(json.dumps({"type": kind, "object": payload}).encode() + b"\n")


def _version_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return {"resourceVersion": version} if version else {}


def _as_scale(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale view of a workload (what `kubectl scale` and scalers read and write)."""
    metadata = obj["metadata"]
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in metadata
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{key}={value}" for key, value in labels.items()),
        },
    }

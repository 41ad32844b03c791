"""The operator's runtime: the API client, router and metrics factories a tick is given (see tick.TickPorts)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from mlrollouts.api import API_VERSION, ModelExperiment
from mlrollouts.api.errors import SpecError
from mlrollouts.controller import telemetry
from mlrollouts.controller.events import EventRecorder
from mlrollouts.controller.retries import RetryBackoff, retry_cap
from mlrollouts.controller.templates import TemplateResolver, no_templates
from mlrollouts.controller.tick import TickPorts
from mlrollouts.engine.types import Event, GateResult
from mlrollouts.hooks import gates
from mlrollouts.hooks.notifier import Notifier
from mlrollouts.hooks.policy import HookPolicy
from mlrollouts.metrics.base import MetricsProvider
from mlrollouts.metrics.policy import CredentialPolicy
from mlrollouts.metrics.prometheus import provider_for
from mlrollouts.metrics.secrets import SecretMissing
from mlrollouts.routing.base import RoutingError, TrafficRouter
from mlrollouts.routing.factory import make_router
from mlrollouts.routing.kube import ObjectClient, ObjectNotFound, is_transient

PLURAL = "modelexperiments"


@dataclass
class Runtime:
    objects: ObjectClient
    retries: RetryBackoff = field(default_factory=RetryBackoff)
    """When a tick that failed (API or routing error) is tried again: 5 s, doubled per failure up to the
    experiment's interval (controller/retries.py)."""
    invalid_recheck_interval: float = 30.0
    """Seconds between re-checks of an invalid experiment (edits wake it at once anyway)."""
    credentials: CredentialPolicy = field(default_factory=CredentialPolicy)
    """The platform's allowed Prometheus addresses, default address and readable Secret names."""
    hooks: HookPolicy = field(default_factory=HookPolicy)
    """The platform's allowed gate and notification addresses, notification Secrets and default receivers."""
    notification_backoff: float = field(
        default_factory=lambda: float(os.environ.get("MLROLLOUTS_NOTIFICATION_BACKOFF", "") or 1.0)
    )
    """Seconds before a notification's first retry (doubled each time); tests compress it with the variable."""
    _providers: dict[tuple, MetricsProvider] = field(default_factory=dict)
    events: EventRecorder = field(init=False)
    """One recorder for the process, so a repeated Warning becomes one Event with a count."""

    _http: httpx.AsyncClient | None = field(default=None, init=False)
    _written: dict[tuple[str, str], str] = field(default_factory=dict, init=False)
    """(namespace, name) → the resourceVersion our last status write produced (see `read`)."""
    notifier: Notifier = field(init=False)
    """Delivers notifications off the reconcile path (hooks.notifier)."""

    def __post_init__(self) -> None:
        self.events = EventRecorder(self.objects)
        self.notifier = Notifier(
            self.hooks, self._read_secret, self.events.post, self.http, backoff=self.notification_backoff
        )

    def http(self) -> httpx.AsyncClient:
        """One HTTP client for gates and notifications, made in the running event loop on first use."""
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    async def _read_secret(self, namespace: str, name: str, key: str) -> bytes:
        try:
            secret = await self.objects.get("v1", "secrets", namespace, name)
        except ObjectNotFound:
            raise LookupError("not found") from None
        data = (secret.get("data") or {}).get(key)
        if data is None:
            raise LookupError(f"no key {key!r}")
        return base64.b64decode(data)

    async def close(self, drain_seconds: float = 5.0) -> None:
        """On shutdown: give queued notifications a few seconds, then close the HTTP clients."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.notifier.idle(), drain_seconds)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:  # their keep-alive sessions (else "Unclosed client session" at every exit)
            close = getattr(provider, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        aclose = getattr(self.objects, "aclose", None)  # the API client's session on this loop
        if aclose is not None:
            await aclose()

    async def call_webhooks(
        self, experiment: ModelExperiment, kind: str, now: datetime, previous_phase: str | None = None
    ) -> tuple[GateResult, ...]:
        return await gates.call(experiment, kind, now, self.http(), self.hooks, previous_phase=previous_phase)

    async def read(self, namespace: str, name: str, live: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The object a tick decides on: the watch's `live` body when its resourceVersion is the one our last
        status write produced (it shows that write, and nothing changed since), else a fresh GET (the watch may
        lag our write, or someone else changed the object). Either way the status write is guarded by the
        version read, so a stale decision is refused, never written; that is also why, for an experiment with no
        status yet, a GET the API server does not answer (a timeout, a 5xx) falls back to the watch's body: on a
        loaded server new experiments' GETs timed out for minutes and they showed no phase at all, as if no
        operator watched them. Only then: with a status, a stale copy would cost a tick's queries and a refused
        write for nothing."""
        if live is not None:
            version = (live.get("metadata") or {}).get("resourceVersion")
            if version is not None and self._written.get((namespace, name)) == version:
                return dict(live)  # kopf replaces the whole raw body per event: a shallow copy is one version
        try:
            return await self.objects.get(API_VERSION, PLURAL, namespace, name)
        except ObjectNotFound:
            return None
        except RoutingError as error:
            if live is None or live.get("status") or not is_transient(error):
                raise  # one that has a status shows its phase meanwhile: retried with backoff, no stale decision
            return dict(live)

    def wrote(self, namespace: str, name: str, version: str) -> bool:
        """Whether our last status write to the experiment produced this resourceVersion (own_writes)."""
        return self._written.get((namespace, name)) == version

    def forget(self, namespace: str, name: str) -> None:
        """The experiment's loop ended (deleted, terminal, or its shard moved): drop what `read` remembers."""
        self._written.pop((namespace, name), None)
        self.retries.succeeded(namespace, name)

    def router_for(self, experiment: ModelExperiment) -> TrafficRouter:
        return make_router(experiment, self.objects)

    async def metrics_for(self, experiment: ModelExperiment) -> MetricsProvider:
        """The experiment's provider; SpecError (Invalid) before any Secret is read if the policy forbids it,
        SecretMissing (the experiment waits) if a Secret it names does not exist yet."""
        problems = self.credentials.problems(experiment)
        if problems:
            raise SpecError(problems)
        address = self.credentials.address_for(experiment)
        secrets = await self._referenced_secrets(experiment)
        prometheus = experiment.spec.analysis.prometheus
        key = (address, prometheus.timeout, tuple(sorted(secrets.items())))
        if key not in self._providers:
            self._providers[key] = provider_for(experiment, lambda ns, name, k: secrets[(ns, name, k)], address)
        return self._providers[key]

    async def _referenced_secrets(self, experiment: ModelExperiment) -> dict[tuple[str, str, str], bytes]:
        """Only in the experiment's own namespace: a SecretKeyRef has no namespace field, and none is added."""
        namespace = experiment.metadata.namespace
        prometheus = experiment.spec.analysis.prometheus
        found: dict[tuple[str, str, str], bytes] = {}
        for path, ref in (
            ("bearerTokenSecretRef", prometheus.bearer_token_secret_ref),
            ("caSecretRef", prometheus.ca_secret_ref),
        ):
            if ref is None:
                continue
            field_path = f"spec.analysis.prometheus.{path}"
            try:
                secret = await self.objects.get("v1", "secrets", namespace, ref.name)
            except ObjectNotFound:
                message = f"secret {namespace}/{ref.name} not found: create it (the experiment waits) or fix the name"
                raise SecretMissing(field_path, message) from None
            data = (secret.get("data") or {}).get(ref.key)
            if data is None:
                message = f"secret {namespace}/{ref.name} has no key {ref.key!r}: add it (the experiment waits)"
                raise SecretMissing(field_path, message, "SecretKeyNotFound")
            found[(namespace, ref.name, ref.key)] = base64.b64decode(data)
        return found

    def ports(self, body: Mapping[str, Any], conflict_with: Callable[[ModelExperiment], str | None]) -> TickPorts:
        async def post_event(event: Event) -> None:
            await self.events.post(body, event)

        async def metrics_for(experiment: ModelExperiment) -> MetricsProvider:
            provider = await self.metrics_for(experiment)
            return _CountingProvider(provider, experiment)

        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name") or ""

        return TickPorts(
            metrics_for=metrics_for,
            router_for=self.router_for,
            write_status=self.write_status,
            clear_annotation=self.clear_annotation,
            post_event=post_event,
            conflict_with=conflict_with,
            hook_problems=self.hooks.problems,
            call_webhooks=self.call_webhooks,
            notify=self.notifier.submit,
            resolve_templates=self.resolve_templates,
            retry_in=lambda: self.retries.delay(namespace, name, retry_cap(body), peek=True),
            status_unchanged=self.status_unchanged,
        )

    async def resolve_templates(self, experiment: ModelExperiment) -> ModelExperiment:
        """templateRefs resolved with a fresh read per tick (see controller/templates.py for why)."""
        read_path = getattr(self.objects, "read_path", None)
        if read_path is None:  # an in-memory client without raw reads: references cannot be resolved
            return await no_templates(experiment)
        return await TemplateResolver(read_path).resolve(experiment)

    async def write_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
    ) -> str | None:
        """The tick's single status write: the whole status replaced, so nothing stale survives.

        Guarded by the resourceVersion the tick read: a tick that decided on a stale read (a second replica
        during a peering hand-over, or an edit in between) is refused instead of repeating a step.
        """
        guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}]
        patch = [*(guard if resource_version else []), {"op": "add", "path": "/status", "value": status}]
        self._written.pop((namespace, name), None)
        written = await self.objects.patch(
            API_VERSION, PLURAL, namespace, name, patch, "json", subresource="status", metadata_only=True
        )
        version = ((written or {}).get("metadata") or {}).get("resourceVersion") if isinstance(written, dict) else None
        if version:
            self._written[(namespace, name)] = version
        return version

    def status_unchanged(self, namespace: str, name: str, resource_version: str | None) -> None:
        """A tick wrote nothing (its status was the one stored at `resource_version`): the watch's copy at that
        version is as good as after our own write, so the next tick need not GET it (see `read`)."""
        if resource_version:
            self._written[(namespace, name)] = resource_version

    async def clear_annotation(self, namespace: str, name: str, key: str) -> None:
        body = {"metadata": {"annotations": {key: None}}}
        await self.objects.patch(API_VERSION, PLURAL, namespace, name, body, "merge")


@dataclass
class _CountingProvider:
    """Counts failed queries for the operator's own metrics without the provider knowing about telemetry."""

    inner: MetricsProvider
    experiment: ModelExperiment

    async def observe(self, experiment: ModelExperiment, now: Any) -> Any:
        observations = await self.inner.observe(experiment, now)
        if observations.failed_queries:
            meta = experiment.metadata
            telemetry.query_errors.labels(meta.namespace, meta.name).inc(observations.failed_queries)
        return observations

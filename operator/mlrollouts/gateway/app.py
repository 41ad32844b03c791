"""The gateway's ASGI apps: the public one (predictions, feedback, health) and the metrics one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope

from mlrollouts.gateway.assignment import BUCKETS, Assignment, bucket_of, weight_to_buckets
from mlrollouts.gateway.config import GatewayConfig
from mlrollouts.gateway.feedback import ReplayCache
from mlrollouts.gateway.feedback_route import FeedbackDesk
from mlrollouts.gateway.headers import REQUEST_DROP, RESPONSE_DROP, RawHeaders, end_to_end
from mlrollouts.gateway.inbound import (
    BadRequest,
    asgi_chunks,
    checked_body,
    collect_body,
    error,
    header_map,
    parse_json,
    request_id,
)
from mlrollouts.gateway.kube_source import default_source
from mlrollouts.gateway.metrics import GatewayMetrics
from mlrollouts.gateway.ownership import FeedbackRelay, Ownership
from mlrollouts.gateway.paths import PathRefused, upstream_path
from mlrollouts.gateway.predict import PREFIX_METHODS, Predict, PublicApp, Reply, error_reply, reply
from mlrollouts.gateway.proxy import Forwarder, Outcome
from mlrollouts.gateway.shadow import MirrorJob, ShadowMirror
from mlrollouts.gateway.slots import Slots
from mlrollouts.gateway.split import SplitState
from mlrollouts.gateway.split_source import SplitSource, follow
from mlrollouts.gateway.tokens import KeyRing, TokenSigner
from mlrollouts.gateway.upstream import make_upstreams, request_target

log = logging.getLogger(__name__)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
TOKEN_HEADER = "x-mlrollouts-token"
TOKEN_NAME = TOKEN_HEADER.encode()


class Gateway:
    """Everything one running gateway shares between requests."""

    def __init__(self, config: GatewayConfig, source: SplitSource, keys: KeyRing | None = None) -> None:
        self.config = config
        self.source = source
        self.metrics = GatewayMetrics()
        self.metrics.declare_variants(config.experiment, list(config.upstreams))
        self.champion = config.champion_name
        self.split: SplitState | None = None
        self.assignment: Assignment | None = None
        self.random = random.Random(config.seed)
        keys = keys if keys is not None else KeyRing.from_environment(config.signing_key_file)
        instance = secrets.token_hex(8)  # this process: its replay memory dies with it
        self.signer = TokenSigner(
            keys, config.experiment, config.feedback_ttl_seconds, issuer=config.advertise_address, instance=instance
        )
        self.replays = ReplayCache(config.feedback_capacity, config.feedback_cache_bytes)
        ownership = Ownership(config.advertise_address, instance, config.metrics_port)
        self.feedback = FeedbackDesk(config, self.metrics, self.signer, self.replays, ownership)
        self.semaphore = Slots(config.max_concurrency)
        # per-request constants, computed once
        self.user_header = config.user_header.lower() if config.user_header else None
        self.override_header = config.override_header.lower()
        self.request_drop = REQUEST_DROP | {self.override_header.encode()}
        self.max_body = config.max_body_bytes

    def apply_split(self, state: SplitState) -> None:
        self.assignment = Assignment.build(
            self.config.experiment, self.champion, self.config.challengers, state.weights
        )
        self.split = state
        for variant, weight in state.weights.items():
            self.metrics.split_weight.labels(self.config.experiment, variant).set(weight)
        self.metrics.shadow_mode.labels(self.config.experiment).set(1 if state.shadow else 0)
        weights = " ".join(f"{name}={weight:g}" for name, weight in state.weights.items())
        log.info("split applied: experiment=%s %s shadow=%s", self.config.experiment, weights, state.shadow)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        clients = make_upstreams(self.config.upstreams, self.config.max_concurrency)
        self.forwarder = Forwarder(self.config.experiment, clients)
        self.mirror = ShadowMirror(
            self.config.experiment,
            clients,
            self.metrics,
            self.config.shadow_queue_size,
            self.config.shadow_tolerance,
            self.config.shadow_workers,
            timeout_seconds=self.config.timeout_seconds,
        )
        self.mirror.start()
        self.feedback.relay = FeedbackRelay(self.config.feedback_forward_timeout_seconds)
        follower = asyncio.create_task(follow(self.source, self.apply_split))
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await self.mirror.stop()
            await self.source.close()
            await self.feedback.relay.aclose()
            for client in clients.values():
                await client.aclose()

    def user_id(self, headers: Mapping[str, str], document: Any) -> str | None:
        if self.user_header and headers.get(self.user_header):
            return headers[self.user_header]
        if self.config.user_field and isinstance(document, dict):
            value = document.get(self.config.user_field)
            if isinstance(value, str) and value != "":
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
        return None

    def choose(self, headers: Mapping[str, str], user_id: str | None) -> tuple[str, int, bool]:
        """(variant, bucket, forced). The override header counts only with --allow-override-header."""
        assert self.assignment is not None and self.split is not None
        bucket = bucket_of(self.config.experiment, user_id) if user_id else self.random.randrange(BUCKETS)
        forced = headers.get(self.override_header) if self.config.allow_override_header else None
        if forced:
            if forced not in self.config.upstreams:
                known = ", ".join(self.config.upstreams)
                raise BadRequest(400, f"{self.config.override_header}: unknown variant {forced[:64]!r}; known: {known}")
            return forced, bucket, True
        variant = self.champion if self.split.shadow else self.assignment.variant_for_bucket(bucket)
        if user_id is None:
            self.metrics.unassigned.labels(self.config.experiment, variant).inc()
        return variant, bucket, False

    async def forward(self, scope: Scope, receive: Receive, whole: bytes | None = None) -> Reply:
        """One prediction request (an ASGI scope and its body, `whole` if already read) to the reply."""
        if self.assignment is None or self.split is None:
            return error_reply(503, "no traffic split loaded yet; check --split-file or the experiment's status")
        method, raw = scope["method"], scope["headers"]
        headers = header_map(raw)
        prefix = self.config.path_prefix if scope["path"] != "/predict" else None
        try:
            path = upstream_path(scope.get("raw_path") or scope["path"].encode(), prefix)
            if method in BODY_METHODS:
                declared = headers.get("content-length")
                if whole is None:
                    body = await collect_body(asgi_chunks(receive), declared, self.max_body)
                else:
                    body = checked_body(whole, declared, self.max_body)
                document = parse_json(body)
            else:
                body, document = b"", None
            user_id = self.user_id(headers, document)
            variant, bucket, forced = self.choose(headers, user_id)
        except PathRefused as problem:
            return error_reply(400, f"path refused: {problem}")
        except BadRequest as problem:
            return error_reply(problem.status, str(problem))
        target = request_target(path, scope.get("query_string", b""))
        rid = request_id(headers)
        id_pair = (b"x-request-id", rid.encode())
        outbound = end_to_end(raw, self.request_drop)
        outbound.append(id_pair)
        outcome, fallback = await self.call_with_fallback(variant, forced, method, target, outbound, body)
        own = [(b"x-mlrollouts-variant", outcome.variant.encode()), id_pair]
        if fallback:
            own.append((b"x-mlrollouts-fallback", b"true"))
        own.append((TOKEN_NAME, self.signer.issue(outcome.variant, outcome.model_version, rid, forced).encode()))
        if outcome.response is None:
            return error_reply(504 if outcome.error_kind == "timeout" else 502, outcome.error_message or "", raw=own)
        if self.split.shadow and outcome.variant == self.champion and not outcome.failed and not forced:
            self.mirror_to_challengers(method, target, outbound, body, outcome, bucket)
        upstream = outcome.response
        answer = end_to_end(upstream.raw_headers, RESPONSE_DROP)
        answer += own
        return reply(upstream.status_code, upstream.content, answer)

    async def call_with_fallback(
        self, variant: str, forced: bool, method: str, target: str, headers: RawHeaders, body: bytes
    ) -> tuple[Outcome, bool]:
        """Call `variant`; a failing challenger hands over to the champion, all within one --timeout."""
        series = self.metrics.forced if forced else self.metrics.served
        may_fall_back = variant != self.champion and self.config.fallback_to_champion and not forced
        deadline = time.monotonic() + self.config.timeout_seconds  # waiting for a slot counts too
        if not self.semaphore.try_take():
            await self.semaphore.take()
        try:
            remaining = deadline - time.monotonic()
            first_budget = min(self.config.challenger_budget, remaining) if may_fall_back else remaining
            outcome = await self.forwarder.call(variant, method, target, headers, body, series, first_budget)
            if not (outcome.failed and may_fall_back):
                return outcome, False
            self.metrics.fallbacks.labels(self.config.experiment, variant).inc()
            remaining = deadline - time.monotonic()
            return await self.forwarder.call(self.champion, method, target, headers, body, series, remaining), True
        finally:
            self.semaphore.release()

    def mirror_to_challengers(
        self, method: str, target: str, headers: RawHeaders, body: bytes, outcome: Outcome, bucket: int
    ) -> None:
        assert self.split is not None and outcome.response is not None
        if bucket >= weight_to_buckets(self.split.mirror_percent):
            return
        for challenger in self.config.challengers:
            response = outcome.response
            job = MirrorJob(challenger, method, target, headers, body, response.status_code, response.content)
            self.mirror.submit(job)

    async def metrics_endpoint(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, _request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, _request: Request) -> Response:
        """Public: ready or not, nothing about the experiment (its weights are on the metrics port)."""
        if self.split is None:
            return error(503, "no traffic split loaded yet")
        return JSONResponse({"ready": True})

    async def split_status(self, _request: Request) -> Response:
        """Metrics port only: the split this replica applies, for operators comparing replicas."""
        if self.split is None:
            return error(503, "no traffic split loaded yet")
        return JSONResponse({"ready": True, "weights": dict(self.split.weights), "shadow": self.split.shadow})


def create_app(config: GatewayConfig, source: SplitSource | None = None, keys: KeyRing | None = None) -> PublicApp:
    """The public app; `source` defaults to the file or API source the config names.

    Predictions take predict.PublicApp's shortcut; the Starlette app behind it routes the same paths to
    the same handler, and answers the rest. No /metrics here: server.metrics_app serves it on its own
    port, out of the internet's reach."""
    gateway = Gateway(config, source if source is not None else default_source(config), keys)
    predict: ASGIApp = Predict(gateway)
    routes = [
        Route("/predict", predict, methods=["POST"]),
        Route("/feedback", gateway.feedback.public, methods=["POST"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", gateway.readyz, methods=["GET"]),
    ]
    if config.path_prefix:
        prefix = config.path_prefix.rstrip("/")
        methods = sorted(PREFIX_METHODS)
        routes.append(Route(prefix, predict, methods=methods))
        routes.append(Route(prefix + "/{rest:path}", predict, methods=methods))
    return PublicApp(gateway, Starlette(routes=routes, lifespan=gateway.lifespan), config.path_prefix)

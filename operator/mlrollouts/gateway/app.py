"""The gateway's ASGI app: sticky assignment, forwarding, fallback, shadow mirroring and feedback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mlrollouts.gateway.assignment import BUCKETS, Assignment, bucket_of, weight_to_buckets
from mlrollouts.gateway.config import GatewayConfig
from mlrollouts.gateway.feedback import FeedbackError, RequestLog, Served, parse_feedback
from mlrollouts.gateway.metrics import GatewayMetrics
from mlrollouts.gateway.proxy import Forwarder, Outcome, forwardable, make_clients
from mlrollouts.gateway.shadow import MirrorJob, ShadowMirror
from mlrollouts.gateway.split import SplitState
from mlrollouts.gateway.split_source import (
    ApiSplitSource,
    FileSplitSource,
    SplitSource,
    follow,
    in_cluster_access,
    load_kubeconfig,
)

log = logging.getLogger(__name__)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def default_source(config: GatewayConfig) -> SplitSource:
    variants = tuple(config.upstreams)
    if config.split_file is not None:
        source: SplitSource = FileSplitSource(config.split_file, variants)
    else:
        access = load_kubeconfig(config.kubeconfig) if config.kubeconfig else in_cluster_access()
        source = ApiSplitSource(access, config.namespace, config.experiment, variants, config.champion_name)
    if config.split_poll_seconds is not None:
        source.interval = config.split_poll_seconds
    return source


class Gateway:
    """Everything one running gateway shares between requests."""

    def __init__(self, config: GatewayConfig, source: SplitSource) -> None:
        self.config = config
        self.source = source
        self.metrics = GatewayMetrics()
        self.metrics.declare_variants(config.experiment, list(config.upstreams))
        self.champion = config.champion_name
        self.split: SplitState | None = None
        self.assignment: Assignment | None = None
        self.random = random.Random(config.seed)
        self.requests = RequestLog(config.feedback_capacity, config.feedback_ttl_seconds)
        self.model_versions: dict[str, str] = {}
        self.semaphore = asyncio.Semaphore(config.max_concurrency)

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
        clients = make_clients(self.config.upstreams, self.config.timeout_seconds, self.config.max_concurrency)
        self.forwarder = Forwarder(self.config.experiment, clients, self.metrics)
        self.mirror = ShadowMirror(
            self.config.experiment,
            clients,
            self.metrics,
            self.config.shadow_queue_size,
            self.config.shadow_tolerance,
            self.config.shadow_workers,
        )
        self.mirror.start()
        follower = asyncio.create_task(follow(self.source, self.apply_split))
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await self.mirror.stop()
            await self.source.close()
            for client in clients.values():
                await client.aclose()

    async def read_json_body(self, request: Request) -> tuple[bytes, Any]:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise BadRequest(413, f"request body is {declared} bytes; the limit is {limit} (--max-body-bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"request body exceeds the limit of {limit} bytes (--max-body-bytes)")
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            raise BadRequest(400, "request body is empty; send a JSON object")
        try:
            return body, json.loads(body)
        except ValueError as problem:
            raise BadRequest(400, f"request body is not valid JSON: {problem}") from problem

    def user_id(self, request: Request, document: Any) -> str | None:
        if self.config.user_header and request.headers.get(self.config.user_header):
            return request.headers[self.config.user_header]
        if self.config.user_field and isinstance(document, dict):
            value = document.get(self.config.user_field)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                return str(value)
        return None

    def choose(self, request: Request, user_id: str | None) -> tuple[str, int, bool]:
        """(variant, bucket, overridden). Unknown override names raise BadRequest."""
        assert self.assignment is not None and self.split is not None
        bucket = bucket_of(self.config.experiment, user_id) if user_id else self.random.randrange(BUCKETS)
        forced = request.headers.get(self.config.override_header)
        if forced:
            if forced not in self.config.upstreams:
                known = ", ".join(self.config.upstreams)
                raise BadRequest(400, f"{self.config.override_header}: unknown variant {forced!r}; known: {known}")
            return forced, bucket, True
        variant = self.champion if self.split.shadow else self.assignment.variant_for_bucket(bucket)
        if user_id is None:
            self.metrics.unassigned.labels(self.config.experiment, variant).inc()
        return variant, bucket, False

    async def forward(self, request: Request) -> Response:
        if self.assignment is None or self.split is None:
            return error(503, "no traffic split loaded yet; check --split-file or the experiment's status")
        try:
            if request.method in BODY_METHODS:
                body, document = await self.read_json_body(request)
            else:
                body, document = b"", None
            user_id = self.user_id(request, document)
            variant, bucket, overridden = self.choose(request, user_id)
        except BadRequest as problem:
            return error(problem.status, str(problem))
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = forwardable(request.headers) | {"x-request-id": request_id}
        async with self.semaphore:
            outcome = await self.forwarder.call(variant, request.method, path, headers, body)
            fallback = (
                outcome.failed and variant != self.champion and self.config.fallback_to_champion and not overridden
            )
            if fallback:
                self.metrics.fallbacks.labels(self.config.experiment, variant).inc()
                outcome = await self.forwarder.call(self.champion, request.method, path, headers, body)
        extra = {"x-mlrollouts-variant": outcome.variant, "x-request-id": request_id}
        if fallback:
            extra["x-mlrollouts-fallback"] = "true"
        self.requests.record(request_id, Served(outcome.variant, outcome.model_version))
        self.model_versions[outcome.variant] = outcome.model_version
        if outcome.response is None:
            return error(504 if outcome.error_kind == "timeout" else 502, outcome.error_message or "", extra)
        if self.split.shadow and outcome.variant == self.champion and not outcome.failed:
            self.mirror_to_challengers(request, path, headers, body, outcome, bucket)
        response = outcome.response
        return Response(response.content, response.status_code, forwardable(response.headers) | extra)

    def mirror_to_challengers(
        self, request: Request, path: str, headers: dict[str, str], body: bytes, outcome: Outcome, bucket: int
    ) -> None:
        assert self.split is not None and outcome.response is not None
        if bucket >= weight_to_buckets(self.split.mirror_percent):
            return
        for challenger in self.config.challengers:
            job = MirrorJob(
                challenger,
                request.method,
                path,
                headers,
                body,
                outcome.response.status_code,
                outcome.response.content,
            )
            self.mirror.submit(job)

    async def feedback(self, request: Request) -> Response:
        try:
            _, document = await self.read_json_body(request)
            feedback = parse_feedback(document)
        except (BadRequest, FeedbackError) as problem:
            return error(getattr(problem, "status", 400), str(problem))
        if feedback.request_id is not None:
            served = self.requests.lookup(feedback.request_id)
            if served is None:
                return error(404, f"unknown or expired request_id {feedback.request_id!r}")
        else:
            if self.assignment is None or self.split is None:
                return error(503, "no traffic split loaded yet; cannot attribute feedback by user_id")
            assert feedback.user_id is not None
            variant = self.champion if self.split.shadow else self.assignment.variant_for_user(feedback.user_id)
            served = Served(variant, self.model_versions.get(variant, variant))
        labels = (self.config.experiment, served.variant, served.model_version)
        if feedback.reward is not None:
            outcome = "success" if feedback.reward == 1 else "failure"
            self.metrics.outcomes.labels(*labels, outcome).inc()
        elif feedback.value is not None:
            self.metrics.outcome_value.labels(*labels).observe(feedback.value)
            self.metrics.outcome_value_squared.labels(*labels).inc(feedback.value**2)
        return JSONResponse({"variant": served.variant, "model_version": served.model_version})

    async def metrics_endpoint(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, _request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, _request: Request) -> Response:
        if self.split is None:
            return error(503, "no traffic split loaded yet")
        return JSONResponse({"ready": True, "weights": dict(self.split.weights), "shadow": self.split.shadow})


def create_app(config: GatewayConfig, source: SplitSource | None = None) -> Starlette:
    """The gateway as an ASGI app; `source` defaults to the file or API source the config names."""
    gateway = Gateway(config, source if source is not None else default_source(config))
    routes = [
        Route("/predict", gateway.forward, methods=["POST"]),
        Route("/feedback", gateway.feedback, methods=["POST"]),
        Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", gateway.readyz, methods=["GET"]),
    ]
    if config.path_prefix:
        prefix = config.path_prefix.rstrip("/")
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        routes.append(Route(prefix, gateway.forward, methods=methods))
        routes.append(Route(prefix + "/{rest:path}", gateway.forward, methods=methods))
    app = Starlette(routes=routes, lifespan=gateway.lifespan)
    app.state.gateway = gateway
    return app

"""The /feedback endpoints: the public one any replica answers, and the internal one replicas forward to.

An outcome counts only with a valid token, once, and only in the process that issued the token
(ownership.py): replicas share the signing key but each remembers only the outcomes it counted itself.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlrollouts.gateway.config import GatewayConfig
from mlrollouts.gateway.feedback import FeedbackError, ReplayCache, parse_feedback
from mlrollouts.gateway.inbound import BadRequest, error, read_json_body
from mlrollouts.gateway.metrics import GatewayMetrics
from mlrollouts.gateway.ownership import FeedbackRelay, Forward, Ownership, Refuse
from mlrollouts.gateway.tokens import TokenError, TokenSigner

MAX_FEEDBACK_BYTES = 16 * 1024  # a token (at most 1 KiB) and an outcome


class FeedbackDesk:
    def __init__(
        self,
        config: GatewayConfig,
        metrics: GatewayMetrics,
        signer: TokenSigner,
        replays: ReplayCache,
        ownership: Ownership,
    ) -> None:
        self.config, self.metrics, self.signer, self.replays = config, metrics, signer, replays
        self.ownership = ownership
        self.relay: FeedbackRelay | None = None  # opened by the app's lifespan

    async def public(self, request: Request) -> Response:
        """POST /feedback on the public port: count it here, or hand it to the replica that issued the token."""
        return await self._handle(request, may_forward=True)

    async def internal(self, request: Request) -> Response:
        """POST /internal/feedback on the metrics port: only for tokens this process issued, never forwarded on."""
        return await self._handle(request, may_forward=False)

    async def _handle(self, request: Request, may_forward: bool) -> Response:
        experiment = self.config.experiment
        reject = self.metrics.feedback_rejected
        try:
            body, document = await read_json_body(request, min(self.config.max_body_bytes, MAX_FEEDBACK_BYTES))
            feedback = parse_feedback(document, self.config.max_outcome_value)
        except (BadRequest, FeedbackError) as problem:
            reject.labels(experiment, "malformed").inc()
            return error(getattr(problem, "status", 400), str(problem))
        try:
            claims = self.signer.verify(feedback.token)
        except TokenError as problem:
            reject.labels(experiment, "token").inc()
            return error(403, str(problem))
        if feedback.request_id is not None and feedback.request_id != claims.request_id:
            reject.labels(experiment, "token").inc()
            return error(403, "request_id does not match the token's; send the token of that response")
        decision = self.ownership.decide(claims)
        if isinstance(decision, Refuse):
            reject.labels(experiment, "issuer").inc()
            return error(410, f"not counted: {decision.message}")
        if isinstance(decision, Forward):
            if not may_forward:
                reject.labels(experiment, "issuer").inc()
                return error(421, "not counted: this replica did not issue the token; post it to /feedback")
            return await self._forward(decision.url, body)
        refused = self.replays.claim(claims.nonce, claims.expires)
        self.metrics.feedback_cache_bytes.labels(experiment).set(self.replays.bytes)
        if refused is not None:
            reject.labels(experiment, "replay").inc()
            return error(409, f"not counted: {refused}")
        series = self.metrics.forced if claims.forced else self.metrics.served
        labels = (experiment, claims.variant, claims.model_version)
        series.record_outcome(labels, feedback.reward, feedback.value)
        answer = {"variant": claims.variant, "model_version": claims.model_version, "request_id": claims.request_id}
        return JSONResponse(answer | {"forced": claims.forced})

    async def _forward(self, url: str, body: bytes) -> Response:
        assert self.relay is not None
        answer = await self.relay.forward(url, body)
        if answer is None:
            self.metrics.feedback_forwarded.labels(self.config.experiment, "unreachable").inc()
            return error(
                503,
                "not counted: the gateway replica that issued this token does not answer (gone or overloaded); "
                "retrying is safe, an outcome never counts twice",
            )
        status, document = answer
        forwarded = "counted" if status == 200 else "refused"
        self.metrics.feedback_forwarded.labels(self.config.experiment, forwarded).inc()
        return JSONResponse(document, status_code=status)

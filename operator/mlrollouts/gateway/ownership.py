"""Which replica counts a token's outcome, and handing feedback to it.

Replicas share the signing key but not their replay memory (feedback.ReplayCache), so a token counted by
each replica it is posted to would count once per replica. Instead every token names its issuing process
(tokens.Claims.issuer and .instance) and only that process counts it: another replica forwards the POST to
the issuer's internal port, and a token whose issuer is gone is refused, since its replay memory (and the
counters the outcome would have joined) went with it.

Forwarding is no SSRF: only holders of the signing key mint tokens, the address is re-checked to be a bare
host, the port is always this gateway's own --metrics-port (replicas share their flags), the path is fixed,
redirects are not followed and the call has a short timeout.
"""

from __future__ import annotations

import http.cookiejar
import json
from dataclasses import dataclass

import httpx

from mlrollouts.gateway.config import valid_advertise_host
from mlrollouts.gateway.tokens import Claims
from mlrollouts.gateway.upstream import RefuseAllCookies

INTERNAL_FEEDBACK_PATH = "/internal/feedback"
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Mine:
    """This process issued the token: count it here."""


@dataclass(frozen=True)
class Forward:
    url: str


@dataclass(frozen=True)
class Refuse:
    message: str


Decision = Mine | Forward | Refuse


def internal_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{INTERNAL_FEEDBACK_PATH}"


@dataclass(frozen=True)
class Ownership:
    advertise_host: str | None
    instance: str
    internal_port: int

    def decide(self, claims: Claims) -> Decision:
        if claims.instance is None:  # signed before tokens named their issuer
            if self.advertise_host is None:
                return Mine()  # one replica, as before: its replay cache is the only one
            return Refuse(
                "the token names no issuing replica (signed by an older gateway); with --advertise-address "
                "set it cannot be counted exactly once, so it is not counted"
            )
        if claims.issuer is not None and claims.issuer != self.advertise_host:
            if not valid_advertise_host(claims.issuer):
                return Refuse("the token names an unusable issuing replica address")
            return Forward(internal_url(claims.issuer, self.internal_port))
        if claims.instance != self.instance:
            return Refuse(
                "the gateway process that issued this token has restarted, or is a replica without "
                "--advertise-address; what it counted is gone with it, so this outcome is not counted"
            )
        return Mine()


class FeedbackRelay:
    """POSTs feedback to the replica that issued its token; None when that replica does not answer."""

    def __init__(self, timeout_seconds: float) -> None:
        self.client = httpx.AsyncClient(
            timeout=timeout_seconds,
            trust_env=False,  # never through an HTTP(S)_PROXY of the environment: replica to replica only
            follow_redirects=False,
            cookies=http.cookiejar.CookieJar(policy=RefuseAllCookies()),
        )

    async def forward(self, url: str, body: bytes) -> tuple[int, dict] | None:
        try:
            answer = await self.client.post(url, content=body, headers={"content-type": "application/json"})
        except httpx.HTTPError:
            return None
        try:
            if len(answer.content) > MAX_ANSWER_BYTES:
                raise ValueError("too large")
            document = json.loads(answer.content)
            if not isinstance(document, dict):
                raise ValueError("not an object")
        except ValueError:
            return 502, {"error": "the replica that issued this token answered something that is not feedback"}
        return answer.status_code, document

    async def aclose(self) -> None:
        await self.client.aclose()

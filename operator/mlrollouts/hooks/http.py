"""One POST with retries and exponential backoff: shared by gates and notifications.

Retried: transport errors, timeouts, 5xx and 429 (the receiver may recover). Not retried: other 4xx (the
request itself is wrong; asking again changes nothing). Redirects are never followed: a 3xx could send the
body (and, for a gate, the decision) to an address the platform did not allow; it counts as a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

USER_AGENT = "mlrollouts"


@dataclass(frozen=True)
class Answer:
    passed: bool
    """A 2xx answer."""
    code: int | None
    """HTTP status of the last attempt; None when none came."""
    message: str
    """What happened, in one stable sentence (no timings: repeated failures aggregate into one Event)."""
    attempts: int


def _retryable(code: int) -> bool:
    return code >= 500 or code == 429


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    timeout: float,
    retries: int,
    backoff: float,
    max_backoff: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Answer:
    """POST `body` as JSON; up to 1 + `retries` attempts, `backoff` × 2^n seconds apart (capped)."""
    last = Answer(False, None, "not called", 0)
    for attempt in range(1, retries + 2):
        if attempt > 1:
            await sleep(min(max_backoff, backoff * 2 ** (attempt - 2)))
        try:
            response = await client.post(
                url, json=body, timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
            )
        except httpx.TimeoutException:
            last = Answer(False, None, f"no answer within {timeout:g}s (after {attempt} attempts)", attempt)
            continue
        except httpx.HTTPError as error:
            reason = type(error).__name__
            last = Answer(False, None, f"request failed: {reason} (after {attempt} attempts)", attempt)
            continue
        code = response.status_code
        if 200 <= code < 300:
            return Answer(True, code, f"HTTP {code}", attempt)
        detail = response.text.strip().replace("\n", " ")[:200]
        last = Answer(False, code, f"HTTP {code}{': ' + detail if detail else ''} (after {attempt} attempts)", attempt)
        if not _retryable(code):
            break
    return last

"""Calling an experiment's webhook gates (spec.webhooks): the controller's side of engine.gates.

Each gate of the requested type gets a POST of the generic body (hooks.payloads) plus `type`, `webhook` and its
`metadata`, all gates of the type concurrently, each bounded by its timeout × attempts. An address the platform
does not allow is never called (HookPolicy makes such an experiment Invalid first; this is the second lock).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx

from mlrollouts.api import ModelExperiment
from mlrollouts.api.durations import duration_seconds
from mlrollouts.api.webhooks import Webhook
from mlrollouts.engine.types import GateResult
from mlrollouts.hooks import payloads
from mlrollouts.hooks.http import post_json
from mlrollouts.hooks.policy import HookPolicy

GATE_BACKOFF_SECONDS = 0.5
"""First pause between attempts of a gate (then doubled, at most 5 s): gates run on the reconcile path."""


async def call(
    experiment: ModelExperiment,
    kind: str,
    now: datetime,
    client: httpx.AsyncClient,
    policy: HookPolicy,
    *,
    previous_phase: str | None = None,
    backoff: float = GATE_BACKOFF_SECONDS,
) -> tuple[GateResult, ...]:
    """Every `kind` gate of the experiment, called once (with retries); answers in spec order.

    `previous_phase`: the phase before the transition that calls the gate (onRollback: the phase rolled back
    from); None for a gate asked within a phase (preStart, loadTest, confirmPromotion), whose body repeats it."""
    status = experiment.status
    previous = status.phase if previous_phase is None else previous_phase
    base = payloads.body(experiment, status, previous, now.isoformat())
    hooks = [hook for hook in experiment.spec.webhooks or [] if hook.type == kind]
    answers = await asyncio.gather(*(_one(hook, base, client, policy, backoff) for hook in hooks))
    return tuple(answers)


async def _one(hook: Webhook, base: dict, client: httpx.AsyncClient, policy: HookPolicy, backoff: float) -> GateResult:
    if not policy.allows_gate(hook.url):
        return GateResult(hook.name, hook.type, False, None, "address not allowed (webhooks.allowedAddresses)", 0)
    body = {**base, "type": hook.type, "webhook": hook.name, "metadata": dict(hook.metadata)}
    answer = await post_json(
        client,
        hook.url,
        body,
        timeout=duration_seconds(hook.timeout),
        retries=hook.retries,
        backoff=backoff,
        max_backoff=5.0,
    )
    return GateResult(hook.name, hook.type, answer.passed, answer.code, answer.message, answer.attempts)

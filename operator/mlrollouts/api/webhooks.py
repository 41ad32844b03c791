"""Gates: `spec.webhooks`, HTTP calls whose answer decides whether the experiment may go on (Flagger's webhooks).

Named and shaped as Flagger users know them (a list of `{name, type, url, timeout, metadata}`), with the
types renamed to what they do here: `preStart` (Flagger's pre-rollout) must answer 2xx before any traffic
moves; `confirmPromotion` holds the experiment at ReadyToPromote until it answers 2xx; `onRollback` is told
of a rollback; `loadTest` (Flagger's rollout hook) is called every tick while a step runs, to generate
traffic where there is no organic traffic. Each call is a POST of a JSON body (see docs/notifications.md).

The operator only calls addresses the platform allowed (chart value webhooks.allowedAddresses): an
experiment is written by a tenant, the call comes from inside the cluster with the operator's network reach.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from mlrollouts.api.base import ApiModel, Name
from mlrollouts.api.durations import DURATION_PATTERN, duration_seconds

GATE_TYPES = ("preStart", "confirmPromotion", "onRollback", "loadTest")
GateType = Literal["preStart", "confirmPromotion", "onRollback", "loadTest"]
MAX_WEBHOOKS = 20
MAX_TIMEOUT_SECONDS = 60.0
MAX_RETRIES = 5


def _timeout_bounds(text: str) -> str:
    seconds = duration_seconds(text)
    if not 0.1 <= seconds <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"timeout {text!r} is outside 100ms to 60s: pick a timeout between 100ms and 60s")
    return text


Timeout = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32), AfterValidator(_timeout_bounds)]
"""A call's timeout: 100 ms to 60 s, so a silent receiver costs a tick at most a minute per attempt."""


class Webhook(ApiModel):
    name: Name
    """Unique within spec.webhooks; shown in status.webhooks and in Events."""
    type: GateType
    """preStart, confirmPromotion, onRollback or loadTest (see docs/notifications.md#gates)."""
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    """Address to POST to; must be under one of the platform's allowed addresses (webhooks.allowedAddresses)."""
    timeout: Timeout = "10s"
    """Per attempt; an attempt that times out counts as a failed answer."""
    retries: int = Field(default=2, ge=0, le=MAX_RETRIES)
    """Extra attempts after a failed one (transport error, timeout or 5xx), with backoff; 4xx is not retried."""
    metadata: dict[str, Annotated[str, Field(max_length=4096)]] = Field(default_factory=dict, max_length=20)
    """Free key/value pairs passed to the receiver in the body's `metadata` (e.g. a load test command)."""


def _unique_names(hooks: list[Webhook]) -> list[Webhook]:
    names = [hook.name for hook in hooks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"webhook names must be unique, repeated: {', '.join(repeated)}")
    return hooks


Webhooks = Annotated[
    list[Webhook],
    Field(
        max_length=MAX_WEBHOOKS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ),
    AfterValidator(_unique_names),
]
"""spec.webhooks: at most 20 gates, names unique (a map list on the API server too)."""


class WebhookStatus(ApiModel):
    """The last answer of one gate, written by the operator."""

    name: str
    type: str
    phase: Literal["Passed", "Failed"]
    """Passed: a 2xx answer; Failed: anything else after every retry."""
    code: int | None = None
    """HTTP status of the last attempt; absent when no answer came (timeout, refused, not allowed)."""
    message: str = ""
    attempts: int = 0
    last_called_at: datetime | None = None

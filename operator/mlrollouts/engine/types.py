"""Decisions are data: what the engine reads (Observations) and what it returns (Decision).

These types are shared by metrics/ (produces Observations), routing/ (applies SetTraffic) and
controller/ (glue). They are pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from mlrollouts.api.status import ModelExperimentStatus


@dataclass(frozen=True)
class Split:
    """Percent of live traffic per variant: integers summing to 100."""

    weights: Mapping[str, int]

    def __post_init__(self) -> None:
        if sum(self.weights.values()) != 100 or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"a split must be non-negative integers summing to 100, got {dict(self.weights)}")

    @classmethod
    def all_to(cls, variant: str, others: list[str]) -> Split:
        return cls({variant: 100, **{o: 0 for o in others if o != variant}})


@dataclass(frozen=True)
class Mirror:
    """Shadow traffic: a copy of `percent` of the champion's requests goes to each target; answers discarded."""

    targets: tuple[str, ...]
    percent: int


@dataclass(frozen=True)
class VariantObservation:
    """One variant's metric values at one tick, as Prometheus returned them.

    `samples` maps the primary metric's query names (successes, trials | count, sum, sumOfSquares) to the
    query result; `guardrails` maps guardrail names to values. None means unavailable (error, empty result or
    NaN), which is never the same as a bad value.
    """

    samples: Mapping[str, float | None]
    guardrails: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    """One webhook gate's answer this tick (spec.webhooks), as the controller got it: the engine only reads it."""

    name: str
    type: str
    passed: bool
    """A 2xx answer; anything else after every retry (or a call the platform does not allow) is not."""
    code: int | None = None
    message: str = ""
    attempts: int = 0


@dataclass(frozen=True)
class Observations:
    """Everything the metrics provider saw at `time` for one experiment."""

    time: datetime
    variants: Mapping[str, VariantObservation]
    errors: tuple[str, ...] = ()
    """Why something was unavailable, as sentences (query error text, "empty result for ...")."""
    failed_queries: int = 0
    """Queries that failed (transport, HTTP, PromQL); empty and NaN results are not failures of the query."""
    cumulative_counters: bool = False
    """True when sample queries return raw counters (no {{window}}): the engine keeps baselines in status."""
    gates: tuple[GateResult, ...] = ()
    """Answers of the webhook gates the engine asked for (engine.gates.due) before this tick."""

    @property
    def samples_available(self) -> bool:
        return bool(self.variants) and all(
            v is not None for obs in self.variants.values() for v in obs.samples.values()
        )


@dataclass(frozen=True)
class SetTraffic:
    """Route live traffic by `split`, mirror per `mirror` (None removes any mirror). Idempotent."""

    split: Split
    mirror: Mirror | None = None
    kind: Literal["set_traffic"] = "set_traffic"


@dataclass(frozen=True)
class CallWebhooks:
    """Call every spec.webhooks entry of `type` (onRollback); the answers go to status, they decide nothing."""

    type: str
    kind: Literal["call_webhooks"] = "call_webhooks"


Action = SetTraffic | CallWebhooks


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the experiment."""

    type: Literal["Normal", "Warning"]
    reason: str  # CamelCase, e.g. StepAdvanced
    message: str


ManualAction = Literal["promote", "rollback", "pause", "resume"]


@dataclass(frozen=True)
class Decision:
    status: ModelExperimentStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()

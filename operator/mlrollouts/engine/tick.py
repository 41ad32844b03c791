"""The status under construction during one decision: field updates, Events and history in one place.

Every strategy writes through a `Tick`, so history stays bounded, Events accompany every change and the
decision kind plus its reason sentence is always recorded in `status.analysis`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import HISTORY_LIMIT, AnalysisStatus, HistoryEntry, ModelExperimentStatus
from mlrollouts.engine import epochs
from mlrollouts.engine.types import Event

RUNNING_PHASES = frozenset({"Progressing", "Shadowing"})


def fmt(value: float | None) -> str:
    """A number as people read it in a reason sentence: 4 significant digits, no float noise."""
    if value is None:
        return "n/a"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def running_phase(spec: ModelExperimentSpec) -> str:
    return "Shadowing" if spec.strategy == "shadow" else "Progressing"


@dataclass
class Tick:
    spec: ModelExperimentSpec
    before: ModelExperimentStatus
    now: datetime
    status: ModelExperimentStatus
    events: list[Event] = field(default_factory=list)
    metrics_message: str | None = None
    """Why metrics were unavailable this tick, for the MetricsAvailable condition."""

    @classmethod
    def begin(cls, spec: ModelExperimentSpec, status: ModelExperimentStatus, now: datetime) -> Tick:
        return cls(spec=spec, before=status, now=now, status=status)

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.spec.interval_seconds)

    def update(self, **fields: Any) -> None:
        self.status = self.status.model_copy(update=fields)

    def event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def record(self, action: str, from_: str | None, to: str | None, reason: str) -> None:
        entry = HistoryEntry(time=self.now, action=action, from_=from_, to=to, reason=reason)
        self.update(history=[*self.status.history, entry][-HISTORY_LIMIT:])

    def decide(self, kind: str, reason: str, **analysis: Any) -> None:
        current = self.status.analysis or AnalysisStatus()
        self.update(analysis=current.model_copy(update={"decision": kind, "reason": reason, **analysis}))

    def note(self, **analysis: Any) -> None:
        """Record analysis figures (p-values, SRM p) without changing the decision."""
        current = self.status.analysis or AnalysisStatus()
        self.update(analysis=current.model_copy(update=analysis))

    def sizes(self) -> dict[str, float]:
        """Trials (or count) per variant so far."""
        return {name: self.status.samples[name].size for name in self.status.samples}

    def new_trials(self, variant: str) -> float:
        """Trials a variant received since its weight last changed (the current step)."""
        sample = self.status.samples.get(variant)
        if sample is None:
            return 0.0
        return max(0.0, sample.size - self.status.step_start_samples.get(variant, 0.0))

    def set_weights(self, weights: dict[str, int]) -> None:
        """Move traffic; the step window (time and samples, also the SRM window) and the epoch restart with it."""
        self.update(
            **epochs.close_epoch(self.spec, self.status),
            weights=dict(weights),
            step_started_at=self.now,
            step_start_samples=self.sizes(),
            srm_window_samples={},
            srm_mismatches=0,
            srm_log_evidence=self.status.srm_log_evidence + self.status.srm_window_log_evidence,
            srm_window_log_evidence=0.0,
        )
        self.restart_guardrail_step()

    # --- ratio guardrails ---
    def restart_guardrail_step(self) -> None:
        """Ratio guardrails judge each step on its own counts: the step's baseline is the counts now."""
        counts = self.status.guardrail_counts
        since_start = {variant: dict(values) for variant, values in counts.since_start.items()}
        self.update(guardrail_counts=counts.model_copy(update={"step_start": since_start}))

    # --- end ratio guardrails ---

    def describe_weights(self, weights: dict[str, int] | None = None) -> str:
        shown = self.status.weights if weights is None else weights
        return "/".join(f"{name} {shown.get(name, 0)}%" for name in self.spec.variant_names)

"""ModelExperiment status: the only durable state. A restarted operator continues from it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from mlrollouts.api.base import ApiModel
from mlrollouts.api.traffic import Traffic, Variant
from mlrollouts.api.webhooks import WebhookStatus

Phase = Literal["Pending", "Shadowing", "Progressing", "Paused", "Promoted", "RolledBack", "Inconclusive", "Invalid"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Promoted", "RolledBack", "Inconclusive"})
DecisionKind = Literal["continue", "advance", "promote", "rollback", "pause", "hold", "conclude"]
HISTORY_LIMIT = 50


class VariantSamples(ApiModel):
    """Exact sufficient statistics since the experiment started (or since analysis restarted)."""

    successes: float | None = None
    trials: float | None = None
    count: float | None = None
    sum: float | None = None
    sum_of_squares: float | None = None
    numerator: float | None = None
    """Ratio metric: sum over users of the numerator (y), with the squares and products below."""
    denominator: float | None = None
    numerator_squares: float | None = None
    denominator_squares: float | None = None
    cross_products: float | None = None

    @property
    def size(self) -> float:
        """Trials for a proportion metric, count (observations or users) for a mean or ratio metric."""
        return self.trials if self.trials is not None else (self.count or 0.0)

    def minus(self, start: VariantSamples | None) -> VariantSamples:
        """What accumulated since `start` (the epoch's opening samples), field by field."""
        if start is None:
            return self
        values = self.model_dump(by_alias=False, exclude_none=True)
        return VariantSamples(**{k: max(0.0, v - (getattr(start, k) or 0.0)) for k, v in values.items()})


class EpochTotals(ApiModel):
    """Closed epochs of one challenger combined (see stats.sequential.Stratified)."""

    weight: float = 0.0
    weighted_estimate: float = 0.0
    weighted_variance: float = 0.0
    epochs: int = 0


class Evidence(ApiModel):
    """The always-valid evidence on one challenger, carried between looks (the confidence sequence)."""

    p_value: float = 1.0
    """Running minimum of the always-valid p-value since the last restart."""
    confidence_interval: list[float | None] = Field(default_factory=lambda: [None, None], min_length=2, max_length=2)
    """Running intersection of the (1 - alpha) intervals of challenger minus champion; null = unbounded."""
    looks: int = 0
    restarts: int = 0
    """Times the intersection became empty (the effect changed) and the sequence restarted."""
    tau: float | None = None
    """Mixture scale fixed at the first look (a scale that moved with the data would void the guarantee)."""
    epochs: EpochTotals = Field(default_factory=lambda: EpochTotals())
    """The closed epochs since the start (or the last restart), combined."""
    since: dict[str, VariantSamples] | None = None
    """Samples at the last restart while it is newer than the open epoch's start: data before it is not used."""


class CounterState(ApiModel):
    """Bookkeeping for one raw counter, so sample counts stay exact across counter resets.

    since_start = last + offset - baseline, where offset accumulates the value lost at each reset.
    """

    baseline: float
    last: float
    offset: float = 0.0


class Plan(ApiModel):
    required_per_variant: int | None = None
    """Per-variant sample size for the configured alpha, power and MDE."""
    baseline: float | None = None
    """Champion value the plan assumes."""
    observed_per_hour: float | None = None
    """Observed trials per hour for the slowest variant."""
    estimated_completion: datetime | None = None


class Comparison(ApiModel):
    """One challenger against the champion."""

    challenger: str
    p_value: float | None = None
    adjusted_p_value: float | None = None
    """Holm-adjusted across challengers (A/B/n)."""
    confidence_interval: list[float] | None = Field(default=None, min_length=2, max_length=2)
    relative_lift: float | None = None
    probability_better: float | None = None
    expected_loss: float | None = None
    verdict: Literal["better", "worse", "undecided"] | None = None


class AnalysisStatus(ApiModel):
    p_value: float | None = None
    confidence_interval: list[float] | None = Field(default=None, min_length=2, max_length=2)
    relative_lift: float | None = None
    probability_better: float | None = None
    expected_loss: float | None = None
    srm_p_value: float | None = None
    regret: float | None = None
    """Bandit: outcomes lost so far against sending every trial to the best arm, at the current estimates."""
    decision: DecisionKind | None = None
    reason: str | None = None
    comparisons: list[Comparison] = Field(default_factory=list)


class GuardrailStatus(ApiModel):
    name: str
    variant: str | None = None
    """The worst challenger for this guardrail at the last check."""
    value: float | None = None
    champion_value: float | None = None
    threshold: str | None = None
    """The bound as a sentence fragment, e.g. "max 0.5" or "maxIncrease 0.01 over champion"."""
    consecutive_failures: int = 0
    healthy: bool = True
    # --- ratio guardrails (type: ratio): counts of the current step and the sequential test's verdict ---
    verdict: Literal["ok", "possible", "breach", "noData"] | None = None
    """Ratio: ok (estimate within the bound), possible (estimate beyond it, not established: the step
    holds), breach (established at alpha: rollback), noData (no events this step)."""
    bad: float | None = None
    """Ratio: bad events of `variant` this step (value = bad / total)."""
    total: float | None = None
    champion_bad: float | None = None
    champion_total: float | None = None
    lower_bound: float | None = None
    """Ratio: the challenger's share is at least this (confidence sequence); a breach once above the bound."""
    p_value: float | None = None
    """Ratio: p-value of the breach at this check, <= alpha exactly when the breach is established."""
    alpha: float | None = None
    """Ratio: the level each test of this guardrail uses (its alpha split across bounds and challengers)."""
    cleared: bool | None = None
    """Ratio: this step's counts rule out a breach of `detectableBreach` x every bound, for every checked
    challenger, with the guardrail's power: a canary step may advance."""
    uncleared: str | None = None
    """Ratio, when not cleared: the breach still to rule out, e.g. "fraud-v8 at 0.006 (maxRatio 1.5 x 2)"."""
    # --- end ratio guardrails ---


# --- ratio guardrails: counter bookkeeping, parallel to `counters` / `stepStartSamples` for the primary metric ---
class GuardrailCounts(ApiModel):
    """Counts of ratio guardrails, keyed variant -> "<guardrail>.bad" / "<guardrail>.total".

    `counters` tracks raw cumulative counters (baseline, last, reset offset) as `counters` does for samples;
    `since_start` holds the latest counts since the analysis started; `step_start` their value when the
    current step began (the weights last changed), so a step's counts are since_start - step_start.
    """

    counters: dict[str, dict[str, CounterState]] = Field(default_factory=dict)
    since_start: dict[str, dict[str, float]] = Field(default_factory=dict)
    step_start: dict[str, dict[str, float]] = Field(default_factory=dict)


# --- end ratio guardrails ---


class Condition(ApiModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None
    """The spec generation this condition was computed from (metav1.Condition convention)."""


# Conditions are a map keyed on `type` (as metav1.Condition lists are): server-side apply and strategic
# merges treat each condition as its own entry, and the API server rejects two conditions of one type.
CONDITIONS_LIST_MAP = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class HistoryEntry(ApiModel):
    time: datetime
    action: str
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    reason: str = ""


class RoutingStatus(ApiModel):
    """What the traffic provider actually applied (e.g. a replica ratio only approximates the split)."""

    provider: str | None = None
    applied_weights: dict[str, int] | None = None
    message: str | None = None
    traffic: Traffic | None = None
    """spec.traffic as it was when the operator last acted on it: where the split actually is. Deleting the
    experiment restores the champion there, even if the spec was since edited to name another object or
    broken (status is a subresource: a tenant who may edit the spec cannot forge this)."""
    variants: list[Variant] | None = Field(default=None, max_length=11)
    """Champion then challengers (name and backends) as they were when the operator last acted on them."""


class RecheckWindow(ApiModel):
    """Bandit: checkpoints of the samples, so the most recent data can be judged on its own."""

    started_at: datetime | None = None
    samples: dict[str, VariantSamples] = Field(default_factory=dict)
    """Samples at `startedAt` (the current checkpoint)."""
    previous: dict[str, VariantSamples] = Field(default_factory=dict)
    """Samples at the checkpoint before: the recent data is everything since then."""


class ModelExperimentStatus(ApiModel):
    phase: Phase | None = None
    reason: str | None = None
    """CamelCase reason of the current phase, e.g. SampleRatioMismatch."""
    message: str | None = None
    observed_generation: int | None = None
    step: int | None = None
    weights: dict[str, int] = Field(default_factory=dict)
    weight_summary: str | None = None
    """The weights for people (the Weight printer column), e.g. "churn-v3=20%" or "churn-v3=100%(mirror)" (shadow)."""
    mirror_percent: int | None = None
    started_at: datetime | None = None
    step_started_at: datetime | None = None
    finished_at: datetime | None = None
    last_analysis_at: datetime | None = None
    last_allocation_at: datetime | None = None
    samples: dict[str, VariantSamples] = Field(default_factory=dict)
    step_start_samples: dict[str, float] = Field(default_factory=dict)
    """Trials (or count) of each variant when the current step began."""
    srm_window_samples: dict[str, float] = Field(default_factory=dict)
    """Trials (or count) of each variant when the sample-ratio window opened; empty until the new split shows."""
    srm_mismatches: int = 0
    """Consecutive checks that found a sample ratio mismatch; the experiment pauses at the second."""
    srm_log_evidence: float = 0.0
    """Log Bayes factor of the closed SRM windows (one per epoch), summed: the evidence carried forward."""
    srm_window_log_evidence: float = 0.0
    """Log Bayes factor of the open SRM window at the last check."""
    counters: dict[str, dict[str, CounterState]] = Field(default_factory=dict)
    """variant -> sample query name -> raw counter bookkeeping."""
    evidence: dict[str, Evidence] = Field(default_factory=dict)
    """Per challenger: running always-valid p and confidence sequence of the primary metric."""
    epoch_start_samples: dict[str, VariantSamples] = Field(default_factory=dict)
    """Samples of each variant when the current epoch (period of constant allocation) began."""
    recheck: RecheckWindow | None = None
    """Bandit: where the recent-data window begins."""
    metrics_failures: int = 0
    """Consecutive ticks without usable metrics."""
    plan: Plan | None = None
    analysis: AnalysisStatus | None = None
    guardrails: list[GuardrailStatus] = Field(default_factory=list)
    guardrail_counts: GuardrailCounts = Field(default_factory=GuardrailCounts)
    """Ratio guardrails: counter bookkeeping and the counts when the current step began."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_LIST_MAP)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_LIMIT)
    routing: RoutingStatus | None = None
    webhooks: list[WebhookStatus] = Field(default_factory=list)
    """The last answer of each gate of spec.webhooks that was called (see api/webhooks.py)."""
    winner: str | None = None
    """The variant that was promoted, or that won a bandit / A/B/n."""
    strategy: str | None = None
    """Strategy the running analysis was started with; the engine restarts the experiment when it changes."""
    queries_fingerprint: str | None = None
    """Digest of the queries taken from metric templates (templateRef) that the analysis runs on; an edited
    template changes it and restarts the analysis, as a spec change does. None without templateRefs."""

    @property
    def is_terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

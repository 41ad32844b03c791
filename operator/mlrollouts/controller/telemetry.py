"""The operator's own Prometheus metrics (names are a contract with the chart's alerts and dashboard)."""

from __future__ import annotations

import contextlib
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from mlrollouts.api import ModelExperiment

REGISTRY = CollectorRegistry(auto_describe=True)
PHASES = ("Pending", "Shadowing", "Progressing", "Paused", "Promoted", "RolledBack", "Inconclusive", "Invalid")
_EXPERIMENT = ("namespace", "experiment")

experiments_by_phase = Gauge("mlrollouts_experiments", "Experiments per phase.", ["phase"], registry=REGISTRY)
experiment_info = Gauge(
    "mlrollouts_experiment_info", "One series per experiment.", [*_EXPERIMENT, "strategy", "phase"], registry=REGISTRY
)
challenger_weight = Gauge(
    "mlrollouts_challenger_weight", "Percent of live traffic per variant.", [*_EXPERIMENT, "variant"], registry=REGISTRY
)
experiment_step = Gauge("mlrollouts_experiment_step", "Current canary step.", _EXPERIMENT, registry=REGISTRY)
last_transition = Gauge(
    "mlrollouts_experiment_last_transition_timestamp_seconds",
    "Time of the last step or phase change.",
    _EXPERIMENT,
    registry=REGISTRY,
)
analysis_interval = Gauge(
    "mlrollouts_analysis_interval_seconds", "The experiment's analysis interval.", _EXPERIMENT, registry=REGISTRY
)
p_value = Gauge("mlrollouts_p_value", "p-value of the primary metric.", _EXPERIMENT, registry=REGISTRY)
probability_better = Gauge(
    "mlrollouts_probability_better", "P(challenger better) of the primary metric.", _EXPERIMENT, registry=REGISTRY
)
confidence_bound = Gauge(
    "mlrollouts_confidence_bound",
    "Always-valid confidence sequence of challenger minus champion (primary metric); bound is lower or upper.",
    [*_EXPERIMENT, "variant", "bound"],
    registry=REGISTRY,
)
srm_p_value = Gauge("mlrollouts_srm_p_value", "Sample-ratio-mismatch p-value.", _EXPERIMENT, registry=REGISTRY)
guardrail_healthy = Gauge(
    "mlrollouts_guardrail_healthy",
    "1 when the guardrail passed its last check; 0 while failing (threshold) or a breach is possible (ratio).",
    [*_EXPERIMENT, "guardrail"],
    registry=REGISTRY,
)
guardrail_p_value = Gauge(
    "mlrollouts_guardrail_p_value",
    "Ratio guardrails: always-valid p-value of a breach at the last check (rollback at <= alpha).",
    [*_EXPERIMENT, "guardrail"],
    registry=REGISTRY,
)
decisions = Counter("mlrollouts_decisions", "Decisions taken, by action.", [*_EXPERIMENT, "action"], registry=REGISTRY)
reconcile_duration = Histogram(
    "mlrollouts_reconcile_duration_seconds",
    "Duration of one reconcile tick.",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
reconcile_errors = Counter(
    "mlrollouts_reconcile_errors", "Ticks that failed (routing, API).", _EXPERIMENT, registry=REGISTRY
)
query_errors = Counter(
    "mlrollouts_prometheus_query_errors", "Prometheus queries that failed.", _EXPERIMENT, registry=REGISTRY
)

_phase_of: dict[tuple[str, str], str] = {}
_bounds_of: dict[tuple[str, str], set[tuple[str, str]]] = {}
_guardrails_of: dict[tuple[str, str], set[str]] = {}
_weights_of: dict[tuple[str, str], set[str]] = {}
_strategy_of: dict[tuple[str, str], str] = {}


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0", registry=REGISTRY)


def record_experiment(experiment: ModelExperiment, transition_time: float | None) -> None:
    """Refresh the per-experiment gauges from its status (called after each status write)."""
    key = (experiment.metadata.namespace, experiment.metadata.name)
    status = experiment.status
    moved = _set_phase(key, experiment.spec.strategy, status.phase or "Pending")
    for variant, weight in status.weights.items():
        if variant != experiment.spec.champion.name:  # the alerts find the champion by its missing series
            challenger_weight.labels(*key, variant).set(weight)
            _weights_of.setdefault(key, set()).add(variant)
    experiment_step.labels(*key).set(status.step or 0)
    analysis_interval.labels(*key).set(experiment.spec.interval_seconds)
    if transition_time is not None:
        last_transition.labels(*key).set(transition_time)
    analysis = status.analysis
    if analysis is not None:
        for gauge, value in ((p_value, analysis.p_value), (probability_better, analysis.probability_better)):
            if value is not None:
                gauge.labels(*key).set(value)
        if analysis.srm_p_value is not None:
            srm_p_value.labels(*key).set(analysis.srm_p_value)
    _record_bounds(key, experiment)
    _record_guardrails(key, experiment)
    if moved:
        _refresh_phase_counts()


def _record_bounds(key: tuple[str, str], experiment: ModelExperiment) -> None:
    """One lower and one upper series per challenger while the bound is finite; gone when it is not."""
    current: set[tuple[str, str]] = set()
    for variant, evidence in experiment.status.evidence.items():
        for bound, value in zip(("lower", "upper"), evidence.confidence_interval, strict=True):
            if value is not None:
                confidence_bound.labels(*key, variant, bound).set(value)
                current.add((variant, bound))
    for stale in _bounds_of.get(key, set()) - current:
        confidence_bound.remove(*key, *stale)
    _bounds_of[key] = current


def _record_guardrails(key: tuple[str, str], experiment: ModelExperiment) -> None:
    names = set()
    for guardrail in experiment.status.guardrails:
        names.add(guardrail.name)
        guardrail_healthy.labels(*key, guardrail.name).set(1 if guardrail.healthy else 0)
        if guardrail.p_value is not None:
            guardrail_p_value.labels(*key, guardrail.name).set(guardrail.p_value)
    _forget_guardrails(key, keep=names)


def _forget_guardrails(key: tuple[str, str], keep: set[str] | None = None) -> None:
    for name in _guardrails_of.pop(key, set()) - (keep or set()):
        for gauge in (guardrail_healthy, guardrail_p_value):
            with contextlib.suppress(KeyError):  # a ratio guardrail may never have had a p-value
                gauge.remove(*key, name)
    if keep:
        _guardrails_of[key] = keep


def record_invalid(namespace: str, name: str, strategy: str | None) -> None:
    if _set_phase((namespace, name), strategy or "unknown", "Invalid"):
        _refresh_phase_counts()


_PER_EXPERIMENT = (experiment_step, last_transition, analysis_interval, p_value, probability_better, srm_p_value)


def forget_experiment(namespace: str, name: str) -> None:
    """Drop every gauge series of the experiment: deleted, or (active-active) now reported by another replica."""
    key = (namespace, name)
    _forget_guardrails(key)
    for gauge in _PER_EXPERIMENT:
        with contextlib.suppress(KeyError):  # a gauge the experiment never set (no p-value yet)
            gauge.remove(*key)
    for variant in _weights_of.pop(key, set()):
        with contextlib.suppress(KeyError):
            challenger_weight.remove(*key, variant)
    for stale in _bounds_of.pop(key, set()):
        confidence_bound.remove(*key, *stale)
    if key in _phase_of:
        experiment_info.remove(*key, _strategy_of.pop(key), _phase_of.pop(key))
        _refresh_phase_counts()


def _set_phase(key: tuple[str, str], strategy: str, phase: str) -> bool:
    """One experiment_info series per experiment: the old one goes when the phase or strategy changes.
    True when the experiment's phase is new or changed: only then do the per-phase counts move (counting every
    experiment's phase on every tick cost O(experiments) per tick)."""
    previous = (_strategy_of.get(key), _phase_of.get(key))
    if previous == (strategy, phase):
        return False
    if previous[1] is not None:
        experiment_info.remove(*key, *previous)
    _strategy_of[key], _phase_of[key] = strategy, phase
    experiment_info.labels(*key, strategy, phase).set(1)
    return previous[1] != phase


def _refresh_phase_counts() -> None:
    counts = Tally(_phase_of.values())
    for phase in PHASES:
        experiments_by_phase.labels(phase).set(counts.get(phase, 0))

"""No traffic moves before the metrics work: the gate in front of an experiment's first step.

An experiment whose Prometheus is unreachable, whose queries are rejected, or whose champion has no data
would otherwise start moving traffic blind and only find out a few ticks later, with the challenger already
serving users and no guardrail ever evaluated. So the first step waits for one complete read: every query
answered (no transport, HTTP or PromQL failure) and the champion's primary-metric values present. The
challengers' values may still be empty: they receive no traffic before the first step.

Until then the experiment stays Pending with reason MetricsUnavailable, Ready=False and MetricsAvailable=False
naming the failing query, and no SetTraffic action is emitted. A single Warning Event marks the first
failed read; onMetricsUnavailable does not apply (nothing has moved, so there is nothing to hold or undo).
"""

from __future__ import annotations

from mlrollouts.engine.samples import sample_queries, usable
from mlrollouts.engine.tick import Tick
from mlrollouts.engine.types import Observations

WAITING_REASON = "MetricsUnavailable"
ERRORS_SHOWN = 3


def first_read_problem(tick: Tick, observations: Observations) -> str | None:
    """Why the metrics are not yet good enough to start on, or None when one complete read succeeded."""
    champion = tick.spec.champion.name
    observed = observations.variants.get(champion)
    values = observed.samples if observed is not None else {}
    missing = [f"{query} of {champion}" for query in sample_queries(tick.spec) if not usable(values.get(query))]
    if not observations.failed_queries and not missing:
        return None
    if observations.errors:
        shown = list(observations.errors[:ERRORS_SHOWN])
        more = len(observations.errors) - len(shown)
        return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
    if missing:
        return f"no value for {', '.join(missing)}"
    return f"{observations.failed_queries} queries failed"


def wait_for_metrics(tick: Tick, problem: str, generation: int | None) -> None:
    """Stay Pending (no weights, no traffic action) and say which query stands in the way."""
    failures = tick.status.metrics_failures + 1
    message = (
        f"waiting for one complete read of every query before moving any traffic "
        f"({failures} failed {'read' if failures == 1 else 'reads'}): {problem}"
    )
    tick.metrics_message = problem
    tick.update(
        phase="Pending",
        reason=WAITING_REASON,
        message=message,
        strategy=tick.spec.strategy,
        observed_generation=generation,
        metrics_failures=failures,
    )
    if failures == 1:
        tick.event("Warning", WAITING_REASON, message)
    tick.decide("hold", message)

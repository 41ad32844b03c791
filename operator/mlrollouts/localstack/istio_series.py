"""The exporter's totals as an Istio sidecar reports them: istio_requests_total and
istio_request_duration_milliseconds, labelled as Istio's standard metrics are.

So the chart's Istio ClusterMetricTemplates run against the local stack with the label names, `le` bounds
(milliseconds, Istio's default buckets) and response codes a mesh produces. The variant is the workload
(destination_workload) and the version label (destination_version); the namespace is `default`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric


class Totals(Protocol):
    """What the exporter's per-variant totals carry (exporter.Totals)."""

    requests: int
    errors: int
    latency_count: int
    latency_sum: float
    latency_buckets: list[int]


LABELS = [
    "reporter",
    "destination_workload",
    "destination_workload_namespace",
    "destination_version",
    "destination_service_name",
    "response_code",
]
HISTOGRAM_LABELS = LABELS[:-1]


def _ms(bound: float) -> str:
    """An `le` value as Envoy writes milliseconds: 500, not 500.0."""
    return f"{bound * 1000:g}"


def istio_metrics(totals: Iterable[tuple[str, Totals]], buckets_seconds: Sequence[float]) -> Iterator[Metric]:
    """One sample per variant and response code (200, 503), and the duration histogram in milliseconds."""
    requests = CounterMetricFamily(
        "istio_requests", "Requests by response code (Istio standard metric).", labels=LABELS
    )
    duration = HistogramMetricFamily(
        "istio_request_duration_milliseconds", "Request duration (Istio standard metric).", labels=HISTOGRAM_LABELS
    )
    for variant, t in totals:
        base = ["destination", variant, "default", variant, variant]
        requests.add_metric([*base, "200"], t.requests - t.errors)
        requests.add_metric([*base, "503"], t.errors)
        buckets = [(_ms(b), c) for b, c in zip(buckets_seconds, t.latency_buckets, strict=True)]
        duration.add_metric(base, [*buckets, ("+Inf", t.latency_count)], t.latency_sum * 1000)
    yield from (requests, duration)

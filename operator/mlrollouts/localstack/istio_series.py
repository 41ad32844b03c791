"""The exporter's totals as an Istio sidecar reports them: istio_requests_total and
istio_request_duration_milliseconds, labelled as Istio's standard metrics are.

So the chart's Istio ClusterMetricTemplates run against the local stack with the label names, `le` bounds
(milliseconds, Istio's default buckets) and response codes a mesh produces. The variant is the workload
(destination_workload) and the version label (destination_version); the namespace is `default`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

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


def istio_metrics(totals: Iterable[tuple[str, object]], buckets_seconds: Sequence[float]) -> Iterator[Metric]:
    """totals: (variant, Totals) pairs with requests, errors, latency_count, latency_sum, latency_buckets."""
    requests = CounterMetricFamily(
        "istio_requests", "Requests by response code (Istio standard metric).", labels=LABELS
    )
    duration = HistogramMetricFamily(
        "istio_request_duration_milliseconds", "Request duration (Istio standard metric).", labels=HISTOGRAM_LABELS
    )
    for variant, t in totals:
        base = ["destination", variant, "default", variant, variant]
        errors = t.errors  # type: ignore[attr-defined]
        requests.add_metric([*base, "200"], t.requests - errors)  # type: ignore[attr-defined]
        requests.add_metric([*base, "503"], errors)
        counts = t.latency_buckets  # type: ignore[attr-defined]
        buckets = [(_ms(b), c) for b, c in zip(buckets_seconds, counts, strict=True)]
        count, total = t.latency_count, t.latency_sum * 1000  # type: ignore[attr-defined]
        duration.add_metric(base, [*buckets, ("+Inf", count)], total)
    yield from (requests, duration)

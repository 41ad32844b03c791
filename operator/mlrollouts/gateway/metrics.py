"""The gateway's Prometheus metrics, one registry per app.

Names follow the article the project grew from, so the operator's default queries
(`model_outcomes_total{variant=...}`, `ab_test_latency_seconds_bucket`, `ab_test_errors_total`,
`ab_test_requests_total`) and its Grafana panels work unchanged.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SERVED = ("experiment_id", "variant", "model_version")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


def prediction_bucket(value: float) -> str:
    """Deciles of [0, 1] ("0.0-0.1" … "0.9-1.0"); anything else is "out_of_range"."""
    if not 0.0 <= value <= 1.0:
        return "out_of_range"
    index = min(int(value * 10), 9)
    return f"{index / 10:.1f}-{(index + 1) / 10:.1f}"


ERROR_KINDS = ("connect", "timeout", "status_5xx")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ab_test_requests", "Requests sent to a variant.", SERVED, registry=r)
        self.latency = Histogram(
            "ab_test_latency_seconds",
            "Upstream latency per variant, failures included.",
            SERVED,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "ab_test_errors",
            "Failed upstream calls (connection error, timeout, 5xx).",
            (*SERVED, "kind"),
            registry=r,
        )
        self.predictions = Counter(
            "ab_test_predictions",
            "Predictions by value decile of the `prediction`/`score` field.",
            (*SERVED, "bucket"),
            registry=r,
        )
        self.unassigned = Counter(
            "ab_test_unassigned_requests",
            "Requests without a user id, split per request instead of per user.",
            ("experiment_id", "variant"),
            registry=r,
        )
        self.fallbacks = Counter(
            "ab_test_fallbacks",
            "Requests a failing challenger handed to the champion.",
            ("experiment_id", "variant"),
            registry=r,
        )
        self.outcomes = Counter(
            "model_outcomes", "Binary outcomes reported via /feedback.", (*SERVED, "outcome"), registry=r
        )
        self.outcome_value = Histogram(
            "model_outcome_value",
            "Numeric outcomes reported via /feedback.",
            SERVED,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=r,
        )
        self.outcome_value_squared = Counter(
            "model_outcome_value_squared",
            "Sum of squared numeric outcomes, so a mean metric can compute its variance.",
            SERVED,
            registry=r,
        )
        self.shadow_agreement = Counter(
            "ab_test_shadow_agreement",
            "Shadow predictions compared with the champion's.",
            ("experiment_id", "variant", "result"),
            registry=r,
        )
        self.shadow_latency = Histogram(
            "ab_test_shadow_latency_seconds",
            "Latency of mirrored requests per challenger.",
            ("experiment_id", "variant"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shadow_difference = Histogram(
            "ab_test_shadow_difference",
            "Absolute difference of numeric shadow predictions.",
            ("experiment_id", "variant"),
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.shadow_errors = Counter(
            "ab_test_shadow_errors", "Failed mirrored requests.", ("experiment_id", "variant"), registry=r
        )
        self.shadow_dropped = Counter(
            "ab_test_shadow_dropped", "Mirrors dropped because the queue was full.", ("experiment_id",), registry=r
        )
        self.split_weight = Gauge(
            "ab_test_split_weight_percent", "Weight currently applied.", ("experiment_id", "variant"), registry=r
        )
        self.shadow_mode = Gauge(
            "ab_test_shadow_mode", "1 while the gateway mirrors to challengers.", ("experiment_id",), registry=r
        )

    def declare_variants(self, experiment: str, variants: list[str]) -> None:
        """Start every variant's request, error and outcome counters at 0.

        A counter that only appears at its first error makes `rate(errors) / rate(requests)` return no data
        for a healthy variant, which the operator must read as "metrics unavailable", not as 0 %.
        The model_version label starts as the variant name (what is reported until an upstream says otherwise).
        """
        for variant in variants:
            labels = (experiment, variant, variant)
            self.requests.labels(*labels)
            for kind in ERROR_KINDS:
                self.errors.labels(*labels, kind)
            for outcome in ("success", "failure"):
                self.outcomes.labels(*labels, outcome)

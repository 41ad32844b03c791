"""The gateway's Prometheus metrics, one registry per app.

Names follow the article the project grew from, so the operator's default queries
(`model_outcomes_total{variant=...}`, `ab_test_latency_seconds_bucket`, `ab_test_errors_total`,
`ab_test_requests_total`) and its Grafana panels work unchanged.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SERVED = ("experiment_id", "variant", "model_version")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


DECILES = tuple(f"{index / 10:.1f}-{(index + 1) / 10:.1f}" for index in range(10))


def prediction_bucket(value: float) -> str:
    """Deciles of [0, 1] ("0.0-0.1" … "0.9-1.0"); anything else is "out_of_range"."""
    if not 0.0 <= value <= 1.0:
        return "out_of_range"
    return DECILES[min(int(value * 10), 9)]


ERROR_KINDS = ("connect", "timeout", "status_5xx")
FEEDBACK_REJECTIONS = ("malformed", "token", "replay", "issuer")
FEEDBACK_FORWARDS = ("counted", "refused", "unreachable")


class ServedSeries:
    """Per-variant series of served requests and their outcomes.

    Two sets exist: the experiment's (what the operator's queries and SRM check read) and `forced_*`, for
    requests a QA override header sent to a chosen variant, which must not bias the experiment.
    """

    def __init__(self, registry: CollectorRegistry, prefix: str, what: str) -> None:
        r, p = registry, prefix
        self._served: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._predictions: dict[tuple[str, str, str, str], Counter] = {}
        self.requests = Counter(f"{p}ab_test_requests", f"{what} sent to a variant.", SERVED, registry=r)
        self.latency = Histogram(
            f"{p}ab_test_latency_seconds",
            f"Upstream latency per variant of {what.lower()}, failures included.",
            SERVED,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            f"{p}ab_test_errors",
            f"Failed upstream calls of {what.lower()} (connection error, timeout, 5xx).",
            (*SERVED, "kind"),
            registry=r,
        )
        self.predictions = Counter(
            f"{p}ab_test_predictions",
            f"Predictions of {what.lower()} by value decile of the `prediction`/`score` field.",
            (*SERVED, "bucket"),
            registry=r,
        )
        self.outcomes = Counter(
            f"{p}model_outcomes", f"Binary outcomes of {what.lower()} via /feedback.", (*SERVED, "outcome"), registry=r
        )
        self.outcome_value = Histogram(
            f"{p}model_outcome_value",
            f"Numeric outcomes of {what.lower()} via /feedback.",
            SERVED,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=r,
        )
        self.outcome_value_squared = Counter(
            f"{p}model_outcome_value_squared",
            "Sum of squared numeric outcomes, so a mean metric can compute its variance.",
            SERVED,
            registry=r,
        )

    def served(self, labels: tuple[str, str, str]) -> tuple[Counter, Histogram]:
        """The request counter and latency histogram of `labels`, looked up once per label set.

        `labels()` validates and locks on every call; a prediction needs these on each request. The label
        sets are few (variants x at most ModelVersions.MAX_VERSIONS), so the cache stays small."""
        children = self._served.get(labels)
        if children is None:
            children = self._served[labels] = (self.requests.labels(*labels), self.latency.labels(*labels))
        return children

    def prediction(self, labels: tuple[str, str, str], bucket: str) -> Counter:
        key = (*labels, bucket)
        child = self._predictions.get(key)
        if child is None:
            child = self._predictions[key] = self.predictions.labels(*key)
        return child

    def record_outcome(self, labels: tuple[str, str, str], reward: int | None, value: float | None) -> None:
        """Count, sum and sum of squares together: the square is computed before anything is recorded."""
        if reward is not None:
            self.outcomes.labels(*labels, "success" if reward == 1 else "failure").inc()
        elif value is not None:
            squared = value * value
            self.outcome_value.labels(*labels).observe(value)
            self.outcome_value_squared.labels(*labels).inc(squared)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.served = ServedSeries(r, "", "Requests")
        self.forced = ServedSeries(r, "forced_", "Requests forced by the override header")
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
        self.feedback_cache_bytes = Gauge(
            "ab_test_feedback_replay_cache_bytes",
            "Estimated memory of the replay cache of counted feedback (bounded by --feedback-cache-bytes).",
            ("experiment_id",),
            registry=r,
        )
        self.feedback_rejected = Counter(
            "ab_test_feedback_rejected",
            "Feedback not counted: malformed, invalid or expired token, replayed, or its issuing process gone.",
            ("experiment_id", "reason"),
            registry=r,
        )
        self.feedback_forwarded = Counter(
            "ab_test_feedback_forwarded",
            "Feedback handed to the replica that issued its token: counted or refused there, or unreachable.",
            ("experiment_id", "result"),
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
        for reason in FEEDBACK_REJECTIONS:
            self.feedback_rejected.labels(experiment, reason)
        for result in FEEDBACK_FORWARDS:
            self.feedback_forwarded.labels(experiment, result)
        for variant in variants:
            labels = (experiment, variant, variant)
            self.served.requests.labels(*labels)
            for kind in ERROR_KINDS:
                self.served.errors.labels(*labels, kind)
            for outcome in ("success", "failure"):
                self.served.outcomes.labels(*labels, outcome)

"""The analysis block: where metrics come from, what the primary metric is, guardrails and statistics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlrollouts.api.base import ApiModel, Name
from mlrollouts.api.cel import cel
from mlrollouts.api.durations import Duration, Interval
from mlrollouts.api.errors import FieldError
from mlrollouts.api.guardrails import Guardrail
from mlrollouts.api.templates import TemplateRef


class SecretKeyRef(ApiModel):
    name: Name
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class PrometheusConnection(ApiModel):
    address: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=2048)
    """Base URL of the Prometheus HTTP API; the platform's default (chart value prometheus.defaultAddress) when
    absent."""
    bearer_token_secret_ref: SecretKeyRef | None = None
    """Secret key holding a bearer token; requests are unauthenticated when absent."""
    ca_secret_ref: SecretKeyRef | None = None
    """Secret key holding a PEM CA bundle for https; the system trust store when absent."""
    timeout: Duration = "10s"
    """Per-query timeout; a query that times out counts as metrics unavailable."""


# Per metric type: (query name in the manifest and in Observations.samples, attribute of PrimaryMetric and of
# VariantSamples). The single list the metrics provider, the engine and validation read.
SAMPLE_QUERIES: dict[str, tuple[tuple[str, str], ...]] = {
    "proportion": (("successes", "successes"), ("trials", "trials")),
    "mean": (("count", "count"), ("sum", "sum"), ("sumOfSquares", "sum_of_squares")),
    "ratio": (
        ("count", "count"),
        ("numerator", "numerator"),
        ("denominator", "denominator"),
        ("numeratorSquares", "numerator_squares"),
        ("denominatorSquares", "denominator_squares"),
        ("crossProducts", "cross_products"),
    ),
}
_MEAN_QUERIES = "the count, sum and sumOfSquares queries"
_RATIO_QUERIES = "the count, numerator, denominator, numeratorSquares, denominatorSquares and crossProducts queries"


def _query_list(metric_type: str) -> str:
    return {"proportion": "the successes and trials queries", "mean": _MEAN_QUERIES}.get(metric_type, _RATIO_QUERIES)


_ALL_QUERIES = tuple(wire for pairs in SAMPLE_QUERIES.values() for wire, _ in pairs)
_TEMPLATE_OR_INLINE = "templateRef takes the queries from the template: remove the inline queries, or the templateRef"


class PrimaryMetric(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "!has(self.templateRef) || !("
                    + " || ".join(f"has(self.{q})" for q in dict.fromkeys(_ALL_QUERIES))
                    + ")",
                    _TEMPLATE_OR_INLINE,
                    ".templateRef",
                ),
                cel(
                    "has(self.templateRef) || self.type != 'proportion' || (has(self.successes) && has(self.trials))",
                    "a proportion metric needs the successes and trials queries",
                ),
                cel(
                    "has(self.templateRef) || self.type != 'mean'"
                    " || (has(self.count) && has(self.sum) && has(self.sumOfSquares))",
                    f"a mean metric needs {_MEAN_QUERIES}",
                ),
                cel(
                    "has(self.templateRef) || self.type != 'ratio'"
                    " || (has(self.count) && has(self.numerator) && has(self.denominator)"
                    " && has(self.numeratorSquares) && has(self.denominatorSquares) && has(self.crossProducts))",
                    f"a ratio metric needs {_RATIO_QUERIES}",
                ),
            ]
        }
    }
    name: Name
    type: Literal["proportion", "mean", "ratio"] = "proportion"
    """proportion (successes/trials), mean (count, sum, sumOfSquares per unit) or ratio (numerator per
    denominator, e.g. clicks per view, with the user as the unit: delta method)."""
    template_ref: TemplateRef | None = None
    """Take the queries for `type` from a MetricTemplate or ClusterMetricTemplate instead of writing them here."""
    successes: str | None = Field(default=None, min_length=1, max_length=4096)
    """Proportion metric: PromQL for the successes of `{{variant}}` over `{{window}}`."""
    trials: str | None = Field(default=None, min_length=1, max_length=4096)
    """Proportion metric: PromQL for the trials of `{{variant}}` over `{{window}}`."""
    count: str | None = Field(default=None, min_length=1, max_length=4096)
    """Mean metric: PromQL for the number of units (users, or events when each event is its own unit);
    ratio metric: the number of users."""
    sum: str | None = Field(default=None, min_length=1, max_length=4096)
    """Mean metric: PromQL for the sum of observations."""
    sum_of_squares: str | None = Field(default=None, min_length=1, max_length=4096)
    """Mean metric: PromQL for the sum of squared observations (gives the variance)."""
    numerator: str | None = Field(default=None, min_length=1, max_length=4096)
    """Ratio metric: PromQL for the sum over users of each user's numerator y (e.g. clicks)."""
    denominator: str | None = Field(default=None, min_length=1, max_length=4096)
    """Ratio metric: PromQL for the sum over users of each user's denominator x (e.g. views)."""
    numerator_squares: str | None = Field(default=None, min_length=1, max_length=4096)
    """Ratio metric: PromQL for the sum over users of y²."""
    denominator_squares: str | None = Field(default=None, min_length=1, max_length=4096)
    """Ratio metric: PromQL for the sum over users of x²."""
    cross_products: str | None = Field(default=None, min_length=1, max_length=4096)
    """Ratio metric: PromQL for the sum over users of x·y."""
    direction: Literal["increase", "decrease"] = "increase"
    """Which way is better."""
    minimum_detectable_effect: float = Field(default=0.05, gt=0.0, le=10.0)
    """Smallest relative change worth detecting; drives the sample-size plan."""
    non_inferiority_margin: float | None = Field(default=None, gt=0.0, le=1.0)
    """Relative loss a canary may still be promoted with: promotion needs the confidence sequence to rule out
    anything worse than this (default: minimumDetectableEffect). The chance of promoting a challenger worse
    than the margin is at most alpha."""
    baseline: float | None = Field(default=None, gt=0.0)
    """Expected champion value (rate or mean) for planning; estimated from data when absent."""
    standard_deviation: float | None = Field(default=None, gt=0.0)
    """Expected standard deviation of a mean metric for planning; estimated from data when absent."""

    @model_validator(mode="after")
    def _queries_for_type(self) -> PrimaryMetric:
        if self.template_ref is not None:
            inline = [wire for wire, attr in _QUERY_ATTRS.items() if getattr(self, attr) is not None]
            if inline:
                raise FieldError("templateRef", f"{_TEMPLATE_OR_INLINE}: {', '.join(inline)}")
            return self
        missing = [name for name, attr in SAMPLE_QUERIES[self.type] if getattr(self, attr) is None]
        if missing:
            raise ValueError(f"a {self.type} metric needs {_query_list(self.type)}: missing {', '.join(missing)}")
        return self


_QUERY_ATTRS = {wire: attr for pairs in SAMPLE_QUERIES.values() for wire, attr in pairs}


class Statistics(ApiModel):
    method: Literal["sequential", "fixedHorizon", "bayesian"] = "sequential"
    """sequential (always-valid p, may stop early), fixedHorizon (decide at the planned n) or bayesian."""
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    """False-positive rate of each decision (Holm-corrected across challengers)."""
    power: float = Field(default=0.8, gt=0.5, lt=1.0)
    """Probability of detecting minimumDetectableEffect; drives the planned sample size."""
    srm_p_value: float = Field(default=0.001, gt=0.0, lt=0.5)
    """Sample-ratio-mismatch alarm threshold of the always-valid SRM p-value: the chance of a false pause over the
    whole experiment, however long it runs."""
    srm_feedback_delay: Duration = "0s"
    """How late outcomes arrive after their request: each SRM window opens this long (and at least two
    intervals) after the weights change, so delayed outcomes of the old split are not judged against the new."""
    probability_threshold: float = Field(default=0.95, gt=0.5, lt=1.0)
    """Bayesian: P(challenger better) needed to promote (spike-and-slab posterior; an A/A test shows it at any
    look with probability at most (1 - p) / p)."""
    loss_threshold: float = Field(default=0.001, gt=0.0)
    """Bayesian: expected loss of choosing the challenger must be below this, relative to the champion's value
    (0.001 = 0.1 % of it)."""


class Analysis(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "!has(self.guardrails) || self.guardrails.all(g, self.guardrails.exists_one(h, h.name == g.name))",
                    "guardrail names must be unique",
                    ".guardrails",
                )
            ]
        }
    }
    interval: Interval = "1m"
    """How often metrics are read and a decision is made: 5s to 1h."""
    prometheus: PrometheusConnection = Field(default_factory=lambda: PrometheusConnection())
    """Where the queries go; the platform's default Prometheus when absent."""
    primary_metric: PrimaryMetric
    guardrails: list[Guardrail] = Field(default_factory=list, max_length=20)
    """Health checks that can roll back (threshold or ratio form, see Guardrail); none when absent."""
    statistics: Statistics = Field(default_factory=Statistics)
    """Test method and error rates; sequential, alpha 0.05, power 0.8 when absent."""

    @model_validator(mode="after")
    def _unique_guardrails(self) -> Analysis:
        names = [g.name for g in self.guardrails]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FieldError("guardrails", f"guardrail names must be unique, repeated: {', '.join(duplicates)}")
        return self

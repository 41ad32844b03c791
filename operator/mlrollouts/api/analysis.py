"""The analysis block: where metrics come from, what the primary metric is, guardrails and statistics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlrollouts.api.base import ApiModel, Name
from mlrollouts.api.cel import cel
from mlrollouts.api.durations import Duration
from mlrollouts.api.errors import FieldError
from mlrollouts.api.guardrails import Guardrail


class SecretKeyRef(ApiModel):
    name: Name
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class PrometheusConnection(ApiModel):
    address: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    """Base URL of the Prometheus HTTP API."""
    bearer_token_secret_ref: SecretKeyRef | None = None
    """Secret key holding a bearer token; requests are unauthenticated when absent."""
    ca_secret_ref: SecretKeyRef | None = None
    """Secret key holding a PEM CA bundle for https; the system trust store when absent."""
    timeout: Duration = "10s"
    """Per-query timeout; a query that times out counts as metrics unavailable."""


_MEAN_QUERIES = "the count, sum and sumOfSquares queries"


class PrimaryMetric(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "self.type != 'proportion' || (has(self.successes) && has(self.trials))",
                    "a proportion metric needs the successes and trials queries",
                ),
                cel(
                    "self.type != 'mean' || (has(self.count) && has(self.sum) && has(self.sumOfSquares))",
                    f"a mean metric needs {_MEAN_QUERIES}",
                ),
            ]
        }
    }
    name: Name
    type: Literal["proportion", "mean"] = "proportion"
    successes: str | None = Field(default=None, min_length=1, max_length=4096)
    """Proportion metric: PromQL for the successes of `{{variant}}` over `{{window}}`."""
    trials: str | None = Field(default=None, min_length=1, max_length=4096)
    """Proportion metric: PromQL for the trials of `{{variant}}` over `{{window}}`."""
    count: str | None = Field(default=None, min_length=1, max_length=4096)
    """Mean metric: PromQL for the number of observations."""
    sum: str | None = Field(default=None, min_length=1, max_length=4096)
    """Mean metric: PromQL for the sum of observations."""
    sum_of_squares: str | None = Field(default=None, min_length=1, max_length=4096)
    """Mean metric: PromQL for the sum of squared observations (gives the variance)."""
    direction: Literal["increase", "decrease"] = "increase"
    """Which way is better."""
    minimum_detectable_effect: float = Field(default=0.05, gt=0.0, le=10.0)
    """Smallest relative change worth detecting; drives the sample-size plan."""
    baseline: float | None = Field(default=None, gt=0.0)
    """Expected champion value (rate or mean) for planning; estimated from data when absent."""
    standard_deviation: float | None = Field(default=None, gt=0.0)
    """Expected standard deviation of a mean metric for planning; estimated from data when absent."""

    @model_validator(mode="after")
    def _queries_for_type(self) -> PrimaryMetric:
        needed = ("successes", "trials") if self.type == "proportion" else ("count", "sum", "sum_of_squares")
        missing = [n for n in needed if getattr(self, n) is None]
        if missing:
            queries = "the successes and trials queries" if self.type == "proportion" else _MEAN_QUERIES
            raise ValueError(f"a {self.type} metric needs {queries}: missing {', '.join(map(_alias, missing))}")
        return self


class Statistics(ApiModel):
    method: Literal["sequential", "fixedHorizon", "bayesian"] = "sequential"
    """sequential (always-valid p, may stop early), fixedHorizon (decide at the planned n) or bayesian."""
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    """False-positive rate of each decision (Holm-corrected across challengers)."""
    power: float = Field(default=0.8, gt=0.5, lt=1.0)
    """Probability of detecting minimumDetectableEffect; drives the planned sample size."""
    srm_p_value: float = Field(default=0.001, gt=0.0, lt=0.5)
    """Sample-ratio-mismatch alarm threshold (chi-square p-value)."""
    probability_threshold: float = Field(default=0.95, gt=0.5, lt=1.0)
    """Bayesian: P(challenger better) needed to promote."""
    loss_threshold: float = Field(default=0.001, gt=0.0)
    """Bayesian: expected loss of choosing the challenger must be below this (absolute rate)."""


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
    interval: Duration = "1m"
    """How often metrics are read and a decision is made."""
    prometheus: PrometheusConnection
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


def _alias(field_name: str) -> str:
    return "sumOfSquares" if field_name == "sum_of_squares" else field_name

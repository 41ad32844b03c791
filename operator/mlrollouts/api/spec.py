"""ModelExperiment spec: the public API (DESIGN §2). The CRD schema is generated from these models.

Every cross-field rule appears twice on purpose: as a CEL `x-kubernetes-validations` rule for the API
server, and as a Python validator for API servers or tools that skip CEL. Both name the field and the fix.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mlrollouts.api.base import ApiModel, Name
from mlrollouts.api.durations import Duration, parse_duration
from mlrollouts.api.errors import FieldError

PROVIDERS = ("istio", "gatewayAPI", "service", "gateway")
STRATEGIES = ("canary", "abTest", "shadow", "bandit")


def cel(rule: str, message: str, field_path: str | None = None) -> dict:
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class Variant(ApiModel):
    name: Name
    """Variant label used in metrics (`{{variant}}`) and in status.weights."""
    service: Name
    """Kubernetes Service (and mesh host) that serves this model version."""
    subset: Name | None = None
    """Istio DestinationRule subset, when variants share one host."""
    deployment: Name | None = None
    """Deployment scaled by the `service` provider; defaults to the service name."""


class IstioTraffic(ApiModel):
    virtual_service: Name
    """VirtualService in the experiment's namespace whose route weights are managed."""
    routes: list[Annotated[str, Field(min_length=1, max_length=253)]] | None = Field(default=None, max_length=32)
    """Named HTTP routes to manage; all routes that send to the champion when absent."""


class GatewayApiTraffic(ApiModel):
    http_route: Name
    """HTTPRoute in the experiment's namespace."""
    rule: int = Field(default=0, ge=0, le=63)
    """Index of the rule whose backendRefs carry the split."""


class ServiceTraffic(ApiModel):
    name: Name
    """Service selecting the pods of both Deployments; the split is the ratio of their replicas."""
    total_replicas: int = Field(default=10, ge=2, le=1000)
    """Replicas shared by champion and challengers; more replicas make the ratio finer."""


class Stickiness(ApiModel):
    header: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9-]{1,64}$")
    """Request header carrying the user id (e.g. x-user-id)."""
    json_field: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """JSON body field carrying the user id, when no header is set."""


class GatewayTraffic(ApiModel):
    stickiness: Stickiness | None = None
    """How the built-in gateway keeps a user on one variant."""


class Traffic(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                *(
                    cel(
                        f"(self.provider == '{name}') == has(self.{name})",
                        f"traffic.{name} must be set exactly when traffic.provider is {name}",
                        f".{name}",
                    )
                    for name in ("istio", "gatewayAPI", "service")
                ),
                cel(
                    "self.provider == 'gateway' || !has(self.gateway)",
                    "traffic.gateway may only be set when traffic.provider is gateway",
                    ".gateway",
                ),
            ]
        }
    }
    provider: Literal["istio", "gatewayAPI", "service", "gateway"]
    """Who moves the traffic."""
    istio: IstioTraffic | None = None
    """Istio VirtualService route weights; required when provider is istio, forbidden otherwise."""
    gateway_api: GatewayApiTraffic | None = Field(default=None, alias="gatewayAPI")
    """Gateway API HTTPRoute backendRef weights; required when provider is gatewayAPI, forbidden otherwise."""
    service: ServiceTraffic | None = None
    """Replica-ratio split behind one Service; required when provider is service, forbidden otherwise."""
    gateway: GatewayTraffic | None = None
    """Built-in gateway options; optional when provider is gateway (no stickiness: split per request)."""

    @model_validator(mode="after")
    def _one_provider_block(self) -> Traffic:
        blocks = {"istio": self.istio, "gatewayAPI": self.gateway_api, "service": self.service}
        for name, block in blocks.items():
            if name == self.provider and block is None:
                raise FieldError(name, f"traffic.{name} must be set exactly when traffic.provider is {name}: add it")
            if name != self.provider and block is not None:
                raise FieldError(
                    name,
                    f"traffic.{name} must be set exactly when traffic.provider is {name}: "
                    f"remove it (traffic.provider is {self.provider})",
                )
        if self.gateway is not None and self.provider != "gateway":
            raise FieldError(
                "gateway",
                f"traffic.gateway may only be set when traffic.provider is gateway: remove it "
                f"(traffic.provider is {self.provider})",
            )
        return self


class Canary(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "self.steps.isSorted() && self.steps.all(s, self.steps.exists_one(t, t == s))",
                    "canary.steps must be strictly increasing",
                    ".steps",
                ),
                cel("self.steps[self.steps.size() - 1] == 100", "canary.steps must end at 100", ".steps"),
            ]
        }
    }
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(min_length=1, max_length=20)
    """Challenger weight (percent) at each step; strictly increasing, ending at 100."""
    step_duration: Duration = "10m"
    """Minimum time at each step before it may advance."""
    min_samples_per_step: int = Field(default=100, ge=1)
    """New trials every variant must receive during a step before it may advance."""

    @model_validator(mode="after")
    def _steps_increase_to_100(self) -> Canary:
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise FieldError("steps", f"canary.steps must be strictly increasing, got {self.steps}")
        if self.steps[-1] != 100:
            raise FieldError("steps", f"canary.steps must end at 100 (full promotion), got {self.steps}: append 100")
        return self


class AbTest(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "!has(self.split) || self.split.map(k, self.split[k]).sum() == 100",
                    "abTest.split weights must sum to 100",
                    ".split",
                )
            ]
        }
    }
    split: dict[str, Annotated[int, Field(ge=0, le=100)]] | None = Field(default=None, max_length=11)
    """Percent of traffic per variant name; equal split when absent."""
    max_duration: Duration = "14d"
    """Stop as Inconclusive when no decision by then."""
    min_duration: Duration = "0s"
    """Do not decide before this (e.g. 7d to cover a weekly cycle)."""

    @model_validator(mode="after")
    def _split_sums_to_100(self) -> AbTest:
        if self.split is not None and sum(self.split.values()) != 100:
            raise FieldError("split", f"abTest.split weights must sum to 100, got {sum(self.split.values())}")
        return self


class Shadow(ApiModel):
    mirror_percent: int = Field(default=100, ge=1, le=100)
    """Percent of the champion's requests mirrored to the challengers."""
    duration: Duration = "1h"
    """How long to compare the shadow with the champion before the verdict."""


class Bandit(ApiModel):
    min_exploration: float = Field(default=0.05, ge=0.0, le=0.5)
    """Floor of every arm's traffic share, so no arm starves."""
    update_interval: Duration = "5m"
    """How often the weights are re-allocated by Thompson sampling."""
    promote_threshold: float = Field(default=0.95, gt=0.5, lt=1.0)
    """Promote an arm once P(it is best) reaches this."""
    min_samples: int = Field(default=1000, ge=1)
    """Trials every arm needs before any promotion."""
    max_duration: Duration = "14d"
    """Stop as Inconclusive when no arm is clearly best by then."""


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


class Guardrail(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "has(self.max) || has(self.min) || has(self.maxIncrease) || has(self.maxRatio)",
                    "a guardrail needs at least one bound: max, min, maxIncrease or maxRatio",
                ),
                cel(
                    "!has(self.max) || !has(self.min) || self.min <= self.max",
                    "guardrail min must not exceed max",
                    ".min",
                ),
            ]
        }
    }
    name: Name
    query: str = Field(min_length=1, max_length=4096)
    max: float | None = None
    """Absolute upper bound."""
    min: float | None = None
    """Absolute lower bound."""
    max_increase: float | None = Field(default=None, ge=0.0)
    """Upper bound on (challenger - champion)."""
    max_ratio: float | None = Field(default=None, gt=0.0)
    """Upper bound on challenger / champion."""
    failure_limit: int = Field(default=1, ge=1, le=100)
    """Consecutive failing checks before rollback."""

    @model_validator(mode="after")
    def _has_a_bound(self) -> Guardrail:
        if all(v is None for v in (self.max, self.min, self.max_increase, self.max_ratio)):
            raise ValueError("a guardrail needs at least one bound: max, min, maxIncrease or maxRatio")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise FieldError("min", f"guardrail min must not exceed max: {self.min} > {self.max}")
        return self

    @property
    def is_relative(self) -> bool:
        return self.max_increase is not None or self.max_ratio is not None


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
    """Checks that roll back after failureLimit consecutive failures; none when absent."""
    statistics: Statistics = Field(default_factory=Statistics)
    """Test method and error rates; sequential, alpha 0.05, power 0.8 when absent."""

    @model_validator(mode="after")
    def _unique_guardrails(self) -> Analysis:
        names = [g.name for g in self.guardrails]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FieldError("guardrails", f"guardrail names must be unique, repeated: {', '.join(duplicates)}")
        return self


_SPEC_RULES = [
    cel(
        "self.challengers.all(c, c.name != self.champion.name)"
        " && self.challengers.all(c, self.challengers.exists_one(d, d.name == c.name))",
        "variant names must be unique across champion and challengers",
        ".challengers",
    ),
    cel("self.strategy != 'canary' || has(self.canary)", "strategy canary needs the canary block", ".canary"),
    cel("self.strategy != 'abTest' || has(self.abTest)", "strategy abTest needs the abTest block", ".abTest"),
    cel("self.strategy != 'shadow' || has(self.shadow)", "strategy shadow needs the shadow block", ".shadow"),
    cel("self.strategy != 'bandit' || has(self.bandit)", "strategy bandit needs the bandit block", ".bandit"),
    cel(
        "!has(self.abTest) || !has(self.abTest.split) || (self.abTest.split.size() == self.challengers.size() + 1"
        " && self.abTest.split.all(k, k == self.champion.name || self.challengers.exists(c, c.name == k)))",
        "abTest.split must name the champion and every challenger, and nothing else",
        ".abTest.split",
    ),
    cel(
        "self.strategy != 'canary' || self.challengers.size() == 1",
        "strategy canary takes exactly one challenger (use abTest or bandit for several)",
        ".challengers",
    ),
    cel(
        "self.strategy != 'shadow' || self.traffic.provider != 'service'",
        "strategy shadow needs a provider that can mirror: istio, gatewayAPI or gateway",
        ".traffic.provider",
    ),
]


class ModelExperimentSpec(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": {"x-kubernetes-validations": _SPEC_RULES}}
    strategy: Literal["canary", "abTest", "shadow", "bandit"]
    """How traffic moves: canary steps, fixed A/B/n split, shadow mirroring or a bandit."""
    champion: Variant
    """The model version in production now; it keeps 100 % on rollback."""
    challengers: list[Variant] = Field(min_length=1, max_length=10)
    """Candidate versions; exactly one for canary, one or more for abTest, shadow and bandit."""
    traffic: Traffic
    canary: Canary | None = None
    """Canary steps; required when strategy is canary."""
    ab_test: AbTest | None = None
    """A/B/n split and horizon; required when strategy is abTest."""
    shadow: Shadow | None = None
    """Mirroring settings; required when strategy is shadow."""
    bandit: Bandit | None = None
    """Thompson-sampling settings; required when strategy is bandit."""
    analysis: Analysis
    on_metrics_unavailable: Literal["hold", "rollback"] = "hold"
    """What to do after metricsFailureLimit consecutive failures to read metrics."""
    metrics_failure_limit: int = Field(default=5, ge=1, le=1000)
    """Consecutive ticks without usable metrics before onMetricsUnavailable applies."""
    auto_promote: bool = True
    """When false, stop in phase Paused with reason ReadyToPromote instead of promoting."""

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ModelExperimentSpec:
        names = self.variant_names
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FieldError(
                "challengers",
                f"variant names must be unique across champion and challengers, repeated: {', '.join(duplicates)}",
            )
        if getattr(self, _BLOCK_ATTR[self.strategy]) is None:
            raise FieldError(self.strategy, f"strategy {self.strategy} needs the {self.strategy} block")
        if self.ab_test is not None and self.ab_test.split is not None and set(self.ab_test.split) != set(names):
            raise FieldError(
                "abTest.split",
                "abTest.split must name the champion and every challenger, and nothing else: "
                f"expected {sorted(names)}, got {sorted(self.ab_test.split)}",
            )
        if self.strategy == "canary" and len(self.challengers) != 1:
            raise FieldError(
                "challengers", "strategy canary takes exactly one challenger (use abTest or bandit for several)"
            )
        if self.strategy == "shadow" and self.traffic.provider == "service":
            raise FieldError(
                "traffic.provider", "strategy shadow needs a provider that can mirror: istio, gatewayAPI or gateway"
            )
        return self

    @property
    def variant_names(self) -> list[str]:
        return [self.champion.name, *(c.name for c in self.challengers)]

    @property
    def variants(self) -> list[Variant]:
        return [self.champion, *self.challengers]

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.analysis.interval).total_seconds()


def _alias(field_name: str) -> str:
    return "sumOfSquares" if field_name == "sum_of_squares" else field_name


_BLOCK_ATTR = {"canary": "canary", "abTest": "ab_test", "shadow": "shadow", "bandit": "bandit"}

"""ModelExperiment spec: the public API (DESIGN §2). The CRD schema is generated from these models.

Every cross-field rule appears twice on purpose: as a CEL `x-kubernetes-validations` rule for the API
server, and as a Python validator for API servers or tools that skip CEL. Both name the field and the fix.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlrollouts.api.analysis import (
    Analysis,
    Guardrail,
    PrimaryMetric,
    PrometheusConnection,
    SecretKeyRef,
    Statistics,
)
from mlrollouts.api.base import ApiModel
from mlrollouts.api.cel import cel
from mlrollouts.api.durations import parse_duration
from mlrollouts.api.errors import FieldError
from mlrollouts.api.notifications import Notifications
from mlrollouts.api.strategies import AbTest, Bandit, Canary, Shadow
from mlrollouts.api.traffic import (
    GatewayApiTraffic,
    GatewayTraffic,
    IstioTraffic,
    ServiceTraffic,
    Stickiness,
    Traffic,
    Variant,
)
from mlrollouts.api.webhooks import Webhooks

PROVIDERS = ("istio", "gatewayAPI", "service", "gateway")
STRATEGIES = ("canary", "abTest", "shadow", "bandit")

__all__ = [
    "PROVIDERS",
    "STRATEGIES",
    "AbTest",
    "Analysis",
    "Bandit",
    "Canary",
    "GatewayApiTraffic",
    "GatewayTraffic",
    "Guardrail",
    "IstioTraffic",
    "ModelExperimentSpec",
    "PrimaryMetric",
    "PrometheusConnection",
    "SecretKeyRef",
    "ServiceTraffic",
    "Shadow",
    "Statistics",
    "Stickiness",
    "Traffic",
    "Variant",
    "cel",
]


_FLOOR_RULE = "bandit.minExploration times the number of arms (champion + challengers) must be at most 1"
_SERVICE_RULE = "each variant needs its own service (or, with istio, its own subset): traffic cannot be split otherwise"
_DEPLOYMENT_RULE = (
    "each variant needs its own Deployment (deployment, else service): replicas cannot be split otherwise"
)
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
    cel(
        "!has(self.bandit) || !has(self.bandit.minExploration)"
        " || self.bandit.minExploration * double(self.challengers.size() + 1) <= 1.0",
        _FLOOR_RULE,
        ".bandit.minExploration",
    ),
    cel(
        # No list concatenation ([champion] + challengers): the API server's CEL type checker refuses joining
        # two differently declared object lists, so the champion and the challengers are checked apart.
        "self.traffic.provider == 'service' || (self.challengers.all(c, c.service != self.champion.service"
        " || (has(c.subset) ? c.subset : '') != (has(self.champion.subset) ? self.champion.subset : ''))"
        " && self.challengers.all(c, self.challengers.exists_one(d, d.service == c.service"
        " && (has(d.subset) ? d.subset : '') == (has(c.subset) ? c.subset : ''))))",
        _SERVICE_RULE,
        ".challengers",
    ),
    cel(
        "self.traffic.provider != 'service' || (self.challengers.all(c,"
        " (has(c.deployment) ? c.deployment : c.service)"
        " != (has(self.champion.deployment) ? self.champion.deployment : self.champion.service))"
        " && self.challengers.all(c, self.challengers.exists_one(d,"
        " (has(d.deployment) ? d.deployment : d.service) == (has(c.deployment) ? c.deployment : c.service))))",
        _DEPLOYMENT_RULE,
        ".challengers",
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
    notifications: Notifications | None = None
    """Receivers told of every phase change and decision (api/notifications.py, docs/notifications.md)."""
    webhooks: Webhooks | None = None
    """Gates: preStart, confirmPromotion, onRollback and loadTest calls (api/webhooks.py, docs/notifications.md)."""

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
        self._distinct_backends()
        if self.bandit is not None and self.bandit.min_exploration * len(names) > 1:
            raise FieldError(
                "bandit.minExploration",
                f"{_FLOOR_RULE}: {self.bandit.min_exploration:g} × {len(names)} arms "
                f"= {self.bandit.min_exploration * len(names):g}; use at most {1 / len(names):.4g}",
            )
        return self

    def _distinct_backends(self) -> None:
        """Two variants on one backend cannot be told apart by the router: the split would be a fiction."""
        by_deployment = self.traffic.provider == "service"
        seen: dict[tuple[str, str], str] = {}
        for variant in self.variants:
            key = (
                (variant.deployment or variant.service, "")
                if by_deployment
                else (variant.service, variant.subset or "")
            )
            if key in seen:
                rule = _DEPLOYMENT_RULE if by_deployment else _SERVICE_RULE
                what = f"Deployment {key[0]}" if by_deployment else f"service {key[0]}"
                what += f" subset {key[1]}" if key[1] else ""
                raise FieldError("challengers", f"{rule}: {seen[key]} and {variant.name} share {what}")
            seen[key] = variant.name

    @property
    def variant_names(self) -> list[str]:
        return [self.champion.name, *(c.name for c in self.challengers)]

    @property
    def variants(self) -> list[Variant]:
        return [self.champion, *self.challengers]

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.analysis.interval).total_seconds()


_BLOCK_ATTR = {"canary": "canary", "abTest": "ab_test", "shadow": "shadow", "bandit": "bandit"}

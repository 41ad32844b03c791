"""Who moves the traffic: the variants and the one provider block that routes them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mlrollouts.api.base import ApiModel, Name
from mlrollouts.api.cel import cel
from mlrollouts.api.errors import FieldError
from mlrollouts.api.kserve import KServeTraffic


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
                    for name in ("istio", "gatewayAPI", "service", "kserve")
                ),
                cel(
                    "self.provider == 'gateway' || !has(self.gateway)",
                    "traffic.gateway may only be set when traffic.provider is gateway",
                    ".gateway",
                ),
            ]
        }
    }
    provider: Literal["istio", "gatewayAPI", "service", "gateway", "kserve"]
    """Who moves the traffic."""
    istio: IstioTraffic | None = None
    """Istio VirtualService route weights; required when provider is istio, forbidden otherwise."""
    gateway_api: GatewayApiTraffic | None = Field(default=None, alias="gatewayAPI")
    """Gateway API HTTPRoute backendRef weights; required when provider is gatewayAPI, forbidden otherwise."""
    service: ServiceTraffic | None = None
    """Replica-ratio split behind one Service; required when provider is service, forbidden otherwise."""
    gateway: GatewayTraffic | None = None
    """Built-in gateway options; optional when provider is gateway (no stickiness: split per request)."""
    kserve: KServeTraffic | None = None
    """KServe InferenceService canaryTrafficPercent (canary only); required when provider is kserve."""

    @model_validator(mode="after")
    def _one_provider_block(self) -> Traffic:
        blocks = {"istio": self.istio, "gatewayAPI": self.gateway_api, "service": self.service, "kserve": self.kserve}
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

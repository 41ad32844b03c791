"""KServe as a traffic provider: `traffic: {provider: kserve, kserve: {inferenceService: NAME}}`.

KServe splits an InferenceService's traffic between exactly two revisions with one number,
`spec.predictor.canaryTrafficPercent`: the previously rolled-out revision (the champion) and the latest ready
one (the challenger). So only a canary can be expressed; shadow (no mirroring), A/B/n (more than two
revisions) and bandit (several arms) cannot, and are refused naming `spec.strategy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlrollouts.api.base import ApiModel, Name
from mlrollouts.api.cel import cel
from mlrollouts.api.errors import FieldError

if TYPE_CHECKING:
    from mlrollouts.api.spec import ModelExperimentSpec

STRATEGY_RULE = (
    "traffic.provider kserve moves spec.predictor.canaryTrafficPercent, which splits between two revisions only: "
    "use strategy canary (KServe cannot mirror for shadow, nor split over several revisions for abTest or bandit)"
)
SPEC_RULES = [cel("self.traffic.provider != 'kserve' || self.strategy == 'canary'", STRATEGY_RULE, ".strategy")]


class KServeTraffic(ApiModel):
    inference_service: Name
    """InferenceService (serving.kserve.io/v1beta1) in the experiment's namespace whose predictor's
    canaryTrafficPercent is managed. The champion's and challenger's `service` name the predictor revisions
    (status.components.predictor.latestRolledoutRevision and latestReadyRevision, e.g. churn-predictor-00002)."""


def check_strategy(spec: ModelExperimentSpec) -> None:
    """The Python twin of SPEC_RULES (the operator and `mlrollouts validate` do not rely on the CRD alone)."""
    if spec.traffic.provider == "kserve" and spec.strategy != "canary":
        raise FieldError("strategy", f"{STRATEGY_RULE}; got strategy {spec.strategy}")

"""Pure decision core: (spec, status, observations, now) -> Decision. No kopf, kubernetes, HTTP or clock."""

from mlrollouts.engine.decide import decide
from mlrollouts.engine.traffic import expected_traffic
from mlrollouts.engine.types import (
    Decision,
    Event,
    ManualAction,
    Mirror,
    Observations,
    SetTraffic,
    Split,
    VariantObservation,
)

__all__ = [
    "Decision",
    "Event",
    "ManualAction",
    "Mirror",
    "Observations",
    "SetTraffic",
    "Split",
    "VariantObservation",
    "decide",
    "expected_traffic",
]

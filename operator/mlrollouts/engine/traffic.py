"""Weights the strategies start from, and what the routing object should show for a given status."""

from __future__ import annotations

from mlrollouts.api.spec import ModelExperimentSpec
from mlrollouts.api.status import ModelExperimentStatus
from mlrollouts.engine.types import Mirror, SetTraffic, Split


def champion_only(spec: ModelExperimentSpec) -> dict[str, int]:
    return {name: (100 if name == spec.champion.name else 0) for name in spec.variant_names}


def only(spec: ModelExperimentSpec, winner: str) -> dict[str, int]:
    return {name: (100 if name == winner else 0) for name in spec.variant_names}


def equal_split(names: list[str], champion: str) -> dict[str, int]:
    """Equal integer shares; the remainder of 100 goes to the champion, the safe side."""
    share = 100 // len(names)
    weights = dict.fromkeys(names, share)
    weights[champion] += 100 - share * len(names)
    return weights


def canary_weights(spec: ModelExperimentSpec, step: int) -> dict[str, int]:
    assert spec.canary is not None
    challenger_weight = spec.canary.steps[step]
    return {spec.champion.name: 100 - challenger_weight, spec.challengers[0].name: challenger_weight}


def initial_weights(spec: ModelExperimentSpec) -> dict[str, int]:
    if spec.strategy == "canary":
        return canary_weights(spec, 0)
    if spec.strategy == "abTest" and spec.ab_test is not None and spec.ab_test.split is not None:
        return {name: spec.ab_test.split[name] for name in spec.variant_names}
    if spec.strategy in ("abTest", "bandit"):
        return equal_split(spec.variant_names, spec.champion.name)
    return champion_only(spec)


def initial_mirror(spec: ModelExperimentSpec) -> int | None:
    return spec.shadow.mirror_percent if spec.strategy == "shadow" and spec.shadow is not None else None


def expected_traffic(status: ModelExperimentStatus, spec: ModelExperimentSpec) -> SetTraffic:
    """What the routing object should show now (for drift repair): the status weights, else champion 100 %."""
    weights = {name: status.weights.get(name, 0) for name in spec.variant_names}
    if sum(weights.values()) != 100:
        weights = champion_only(spec)
    mirror = None
    if status.mirror_percent:
        mirror = Mirror(targets=tuple(c.name for c in spec.challengers), percent=status.mirror_percent)
    return SetTraffic(split=Split(weights), mirror=mirror)

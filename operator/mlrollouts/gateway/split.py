"""What the gateway routes by: weights per variant and whether the experiment is shadowing.

Parsing is pure and strict: a split that names an unknown variant or does not sum to 100 is rejected
with a message naming the problem, and the caller keeps the last good split.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SHADOW_PHASE = "Shadowing"
WEIGHT_TOLERANCE = 0.01


class SplitError(ValueError):
    """A split that cannot be applied; the message says what to fix."""


@dataclass(frozen=True)
class SplitState:
    weights: Mapping[str, float]
    shadow: bool = False
    mirror_percent: float = 100.0
    phase: str | None = None


def validate_weights(raw: Any, variants: Sequence[str], where: str) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise SplitError(f"{where} must be a non-empty object of variant -> percent, e.g. {{'a': 90, 'b': 10}}")
    weights: dict[str, float] = {}
    for name, value in raw.items():
        if name not in variants:
            raise SplitError(f"{where} names unknown variant {name!r}; known: {', '.join(variants)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SplitError(f"{where}.{name} must be a number of percent, got {value!r}")
        if value < 0:
            raise SplitError(f"{where}.{name} must be >= 0, got {value}")
        weights[name] = float(value)
    total = sum(weights.values())
    if abs(total - 100) > WEIGHT_TOLERANCE:
        raise SplitError(f"{where} weights sum to {total:g}, they must sum to 100")
    return {name: weights.get(name, 0.0) for name in variants}


def _mirror_percent(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 100:
        raise SplitError(f"{where} must be a percent between 0 and 100, got {raw!r}")
    return float(raw)


def parse_split_file(text: str, variants: Sequence[str]) -> SplitState:
    """`{"a": 90, "b": 10}`, or `{"weights": {...}, "phase": "Shadowing", "mirrorPercent": 100}`."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise SplitError(f"split file is not valid JSON: {error}") from error
    if isinstance(document, dict) and "weights" in document:
        phase = document.get("phase")
        if phase is not None and not isinstance(phase, str):
            raise SplitError(f"phase must be a string like {SHADOW_PHASE!r}, got {phase!r}")
        weights = validate_weights(document["weights"], variants, "weights")
        mirror = _mirror_percent(document.get("mirrorPercent", 100), "mirrorPercent")
        return SplitState(weights, shadow=phase == SHADOW_PHASE, mirror_percent=mirror, phase=phase)
    return SplitState(validate_weights(document, variants, "split"))


def parse_experiment(document: Any, variants: Sequence[str], champion: str) -> SplitState:
    """The split a ModelExperiment asks for: `status.weights`, `status.phase`, `spec.shadow.mirrorPercent`.

    No weights yet (a new experiment) means the champion takes everything.
    """
    if not isinstance(document, dict):
        raise SplitError("experiment is not a JSON object")
    status = document.get("status") or {}
    spec = document.get("spec") or {}
    if not isinstance(status, dict) or not isinstance(spec, dict):
        raise SplitError("experiment status and spec must be objects")
    phase = status.get("phase")
    raw_weights = status.get("weights")
    if raw_weights:
        weights = validate_weights(raw_weights, variants, "status.weights")
    else:
        weights = {name: 100.0 if name == champion else 0.0 for name in variants}
    shadow_spec = spec.get("shadow") or {}
    mirror = _mirror_percent(
        shadow_spec.get("mirrorPercent", 100) if isinstance(shadow_spec, dict) else 100,
        "spec.shadow.mirrorPercent",
    )
    return SplitState(weights, shadow=phase == SHADOW_PHASE, mirror_percent=mirror, phase=phase)

"""The strategy blocks: how traffic moves over time (canary steps, a fixed A/B split, shadow, bandit)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from mlrollouts.api.base import ApiModel
from mlrollouts.api.cel import cel
from mlrollouts.api.durations import Duration
from mlrollouts.api.errors import FieldError

MAX_COUNT = 1_000_000_000


def _at_most_a_billion(value: object) -> object:
    """Say so before int parsing does: 1e30 would otherwise read "exceeded maximum size"."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_COUNT:
        raise ValueError(f"{value:g} is more than 1e9: use at most {MAX_COUNT}")
    return value


Count = Annotated[int, Field(ge=1, le=MAX_COUNT), BeforeValidator(_at_most_a_billion)]
"""A number of samples or trials: 1 to 1e9."""


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
    min_samples_per_step: Count = 100
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
    """An arm is promoted only with P(it is best) at least this, on top of the always-valid evidence."""
    min_samples: Count = 1000
    """Trials every arm needs before any promotion."""
    min_duration: Duration = "1d"
    """No promotion before this: a novelty effect or a daily cycle must not decide (1d covers one cycle)."""
    recheck_window: Duration = "6h"
    """Promotion also needs the leader ahead on the most recent data alone (between one and two windows of it),
    so an effect that faded (novelty) cannot win on its early strength."""
    max_duration: Duration = "14d"
    """Stop as Inconclusive when no arm is clearly best by then."""

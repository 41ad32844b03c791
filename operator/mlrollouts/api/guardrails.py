"""Guardrails: hard limits on a challenger's health, in two forms.

- `type: threshold` (the default when `query` is given, the original form): one value per check against
  max / min / maxIncrease / maxRatio; `failureLimit` consecutive failing checks roll back. Simple, but a
  noisy value breaks a bound by chance: see docs/statistics.md for its measured false rollback rate.
- `type: ratio` (inferred when `bad` and `total` are given; the SLO form of OpenSLO / Sloth): two counters,
  bad events and all events (errors and requests; requests slower than a histogram bucket's `le` and the
  histogram's `_count`). Counts accumulate per step and a one-sided sequential test (stats/guardrail.py)
  rolls back only once the breach is established at `alpha`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from mlrollouts.api.base import ApiModel, Name
from mlrollouts.api.cel import cel
from mlrollouts.api.errors import FieldError
from mlrollouts.api.templates import TemplateRef

DEFAULT_RATIO_ALPHA = 0.01
DEFAULT_POWER = 0.95
DEFAULT_DETECTABLE_BREACH = 2.0
# The guardrail's form when `type` is absent: ratio for counts without a query, threshold otherwise.
# With a templateRef and no type, the form is only known once the template is read: 'template' skips the rules.
_KIND = (
    "(has(self.type) ? self.type : has(self.templateRef) ? 'template'"
    " : ((has(self.bad) || has(self.total)) && !has(self.query) ? 'ratio' : 'threshold'))"
)
_NEEDS_SOURCE = "a guardrail needs query (type: threshold), bad and total (type: ratio), or a templateRef"
_TEMPLATE_OR_INLINE = "templateRef takes the queries from the template: remove query, bad and total, or the templateRef"
_RATIO_NEEDS_BOTH = "a ratio guardrail needs both bad and total (counters of bad events and of all events)"
_NO_QUERY = "query is for type: threshold; a ratio guardrail counts events with bad and total"
_NO_COUNTS = (
    "bad and total belong to type: ratio; a threshold guardrail reads one value per check from query "
    "(remove type: threshold to use the counts)"
)
_NO_MIN = "a ratio guardrail bounds the share of bad events from above: use max, maxIncrease or maxRatio, not min"
_NO_FAILURE_LIMIT = (
    "failureLimit is for type: threshold; a ratio guardrail rolls back when its sequential test establishes "
    "the breach at alpha"
)
_NO_ALPHA = "alpha is for type: ratio; a threshold guardrail rolls back after failureLimit failing checks"
_RATIO_ONLY = (
    "{field} is for type: ratio (the chance a canary step rules out a breach before advancing); a threshold "
    "guardrail has no test to give it power"
)
_MAX_SHARE = "a ratio guardrail's max is a share of events: strictly between 0 and 1"
_WINDOW = re.compile(r"\{\{\s*window\s*\}\}")
_INTERVAL = re.compile(r"\{\{\s*interval\s*\}\}")


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
                cel("has(self.query) || has(self.bad) || has(self.total) || has(self.templateRef)", _NEEDS_SOURCE),
                cel(
                    "!has(self.templateRef) || !(has(self.query) || has(self.bad) || has(self.total))",
                    _TEMPLATE_OR_INLINE,
                    ".templateRef",
                ),
                cel(f"{_KIND} != 'ratio' || !has(self.query)", _NO_QUERY, ".query"),
                cel(
                    f"{_KIND} != 'ratio' || has(self.query) || has(self.templateRef)"
                    " || (has(self.bad) && has(self.total))",
                    _RATIO_NEEDS_BOTH,
                ),
                cel(f"{_KIND} != 'threshold' || (!has(self.bad) && !has(self.total))", _NO_COUNTS, ".type"),
                cel(f"{_KIND} != 'ratio' || !has(self.min)", _NO_MIN, ".min"),
                cel(f"{_KIND} != 'ratio' || !has(self.failureLimit)", _NO_FAILURE_LIMIT, ".failureLimit"),
                cel(f"{_KIND} != 'threshold' || !has(self.alpha)", _NO_ALPHA, ".alpha"),
                cel(f"{_KIND} != 'ratio' || !has(self.max) || (self.max > 0.0 && self.max < 1.0)", _MAX_SHARE, ".max"),
                cel(f"{_KIND} != 'threshold' || !has(self.power)", _RATIO_ONLY.format(field="power"), ".power"),
                cel(
                    f"{_KIND} != 'threshold' || !has(self.detectableBreach)",
                    _RATIO_ONLY.format(field="detectableBreach"),
                    ".detectableBreach",
                ),
            ]
        }
    }
    name: Name
    type: Literal["threshold", "ratio"] | None = None
    """threshold (one value per check from `query`) or ratio (counts from `bad` and `total`, judged by a
    sequential test). When absent: ratio if `bad` or `total` is given without `query`, else threshold."""
    template_ref: TemplateRef | None = None
    """Take query (threshold) or bad and total (ratio) from a MetricTemplate or ClusterMetricTemplate."""
    query: str | None = Field(default=None, min_length=1, max_length=4096)
    """Threshold: PromQL for one value of `{{variant}}` per check (a latency quantile, an error rate)."""
    bad: str | None = Field(default=None, min_length=1, max_length=4096)
    """Ratio: PromQL for the bad events of `{{variant}}`, a cumulative counter or increase(...[{{window}}])."""
    total: str | None = Field(default=None, min_length=1, max_length=4096)
    """Ratio: PromQL for all events of `{{variant}}`, in the same form as `bad`."""
    max: float | None = None
    """Absolute upper bound (ratio: on the share bad/total)."""
    min: float | None = None
    """Absolute lower bound (threshold only)."""
    max_increase: float | None = Field(default=None, ge=0.0)
    """Upper bound on (challenger - champion)."""
    max_ratio: float | None = Field(default=None, gt=0.0)
    """Upper bound on challenger / champion."""
    failure_limit: int | None = Field(default=None, ge=1, le=100)
    """Threshold: consecutive failing checks before rollback; 1 when absent."""
    alpha: float | None = Field(default=None, gt=0.0, lt=0.5)
    """Ratio: chance that a challenger within the bounds is rolled back by this guardrail in one step,
    split evenly across its bounds and the challengers checked (Bonferroni); 0.01 when absent."""
    power: float | None = Field(default=None, ge=0.0, le=0.999)
    """Ratio: the chance that a challenger breaking a bound `detectableBreach` times over is held at the
    canary step it was found in (and rolled back once established) rather than advanced: a step advances only
    when its counts rule that breach out. 0 turns the hold off; 0.95 when absent."""
    detectable_breach: float | None = Field(default=None, gt=1.0, le=100.0)
    """Ratio: the breach `power` is about, as a multiple of the allowed share (2: twice the bound; for
    maxRatio 1.5 against a champion at 0.2 %, a challenger at 0.6 %). 2 when absent."""

    @model_validator(mode="after")
    def _consistent(self) -> Guardrail:
        if all(v is None for v in (self.max, self.min, self.max_increase, self.max_ratio)):
            raise ValueError("a guardrail needs at least one bound: max, min, maxIncrease or maxRatio")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise FieldError("min", f"guardrail min must not exceed max: {self.min} > {self.max}")
        if self.template_ref is not None:
            if self.query is not None or self.bad is not None or self.total is not None:
                raise FieldError("templateRef", _TEMPLATE_OR_INLINE)
            return self._check_template_bounds()
        if self.query is None and self.bad is None and self.total is None:
            raise ValueError(_NEEDS_SOURCE)
        if self.kind == "threshold":
            if self.bad is not None or self.total is not None:
                raise FieldError("type", _NO_COUNTS)
            if self.alpha is not None:
                raise FieldError("alpha", _NO_ALPHA)
            for field, value in (("power", self.power), ("detectableBreach", self.detectable_breach)):
                if value is not None:
                    raise FieldError(field, _RATIO_ONLY.format(field=field))
            return self
        if self.query is not None:
            raise FieldError("query", _NO_QUERY)
        if self.bad is None or self.total is None:
            raise ValueError(_RATIO_NEEDS_BOTH)
        self._check_ratio_bounds()
        self._check_count_queries()
        return self

    def _check_template_bounds(self) -> Guardrail:
        """The form is known only after resolution (which validates the guardrail again, in full): check
        here only what `type`, when given, already decides."""
        if self.type == "threshold" and self.alpha is not None:
            raise FieldError("alpha", _NO_ALPHA)
        if self.type == "ratio":
            self._check_ratio_bounds()
        return self

    def _check_ratio_bounds(self) -> None:
        """A ratio guardrail has a share to stay below (0 < max < 1), tested sequentially: no min, no failureLimit."""
        if self.min is not None:
            raise FieldError("min", _NO_MIN)
        if self.failure_limit is not None:
            raise FieldError("failureLimit", _NO_FAILURE_LIMIT)
        if self.max is not None and not 0.0 < self.max < 1.0:
            raise FieldError("max", f"{_MAX_SHARE}, got {self.max}")

    def _check_count_queries(self) -> None:
        """Both counts must be totals since a fixed point, read the same way, so bad <= total holds."""
        assert self.bad is not None and self.total is not None
        for field, text in (("bad", self.bad), ("total", self.total)):
            if _INTERVAL.search(text):
                raise FieldError(
                    field,
                    "a ratio guardrail needs counts since a fixed point, not per {{interval}}: use the cumulative "
                    'counter (sum(errors_total{variant="{{variant}}"})) or increase(...[{{window}}])',
                )
        if bool(_WINDOW.search(self.bad)) != bool(_WINDOW.search(self.total)):
            raise FieldError(
                "total",
                "bad and total must be read the same way: both cumulative counters or both increase(...[{{window}}])",
            )

    @property
    def kind(self) -> Literal["threshold", "ratio"]:
        """The form in effect: `type`, else ratio for counts without a query, else threshold (the old form)."""
        if self.type is not None:
            return self.type
        return "ratio" if (self.bad is not None or self.total is not None) and self.query is None else "threshold"

    @property
    def limit(self) -> int:
        """Threshold: consecutive failing checks before rollback."""
        return self.failure_limit or 1

    @property
    def test_alpha(self) -> float:
        return self.alpha if self.alpha is not None else DEFAULT_RATIO_ALPHA

    @property
    def test_power(self) -> float:
        return self.power if self.power is not None else DEFAULT_POWER

    @property
    def breach_factor(self) -> float:
        return self.detectable_breach if self.detectable_breach is not None else DEFAULT_DETECTABLE_BREACH

    @property
    def counts_use_window(self) -> bool:
        """Ratio: the counts are increase(...[{{window}}]) since the analysis started, not raw counters."""
        return self.bad is not None and bool(_WINDOW.search(self.bad))

    @property
    def is_relative(self) -> bool:
        return self.max_increase is not None or self.max_ratio is not None


COUNT_PARTS = ("bad", "total")


def count_key(guardrail: str, part: str) -> str:
    """Observation / status key of one count of a ratio guardrail: "error-rate.bad" (names hold no dots)."""
    return f"{guardrail}.{part}"

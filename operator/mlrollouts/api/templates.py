"""MetricTemplate and ClusterMetricTemplate: reusable queries, referenced by name with arguments.

What Flagger's MetricTemplate and Argo Rollouts' (Cluster)AnalysisTemplate are for: a platform team writes
the PromQL for its mesh once (Istio's `istio_requests_total`, Contour's Envoy cluster stats, the built-in
gateway's `ab_test_*`) and experiments say `templateRef: {name: istio-success-rate, args: {...}}`.

A template holds the same query fields inline metrics have (successes/trials, count/sum/sumOfSquares, the
ratio sums, query, bad/total) with `{{args.NAME}}` placeholders besides the usual `{{variant}}`,
`{{window}}`...; the operator substitutes the arguments when it resolves the reference (before every tick),
and the engine only ever sees the resolved inline queries.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from mlrollouts import GROUP, VERSION
from mlrollouts.api.base import ApiModel
from mlrollouts.api.cel import cel
from mlrollouts.api.errors import FieldError, SpecError, SpecProblem

TEMPLATE_KIND = "MetricTemplate"
CLUSTER_TEMPLATE_KIND = "ClusterMetricTemplate"
TEMPLATE_KINDS = (TEMPLATE_KIND, CLUSTER_TEMPLATE_KIND)
TEMPLATE_PLURALS = {TEMPLATE_KIND: "metrictemplates", CLUSTER_TEMPLATE_KIND: "clustermetrictemplates"}
TemplateKind = Literal["MetricTemplate", "ClusterMetricTemplate"]

ARG_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_]*$"
# An argument value lands inside PromQL: no quote, brace, backslash, space or newline can be in it, so a
# value can never close a quoted label value or start new PromQL (the same rule as {{variant}}'s value).
ARG_VALUE_PATTERN = r"^[-A-Za-z0-9_.:/+*|^$]+$"
ARG_VALUE_RULE = "letters, digits and - _ . : / + * | ^ $ only (no quotes, braces, backslashes or spaces)"
# metadata.name of a custom resource: a DNS-1123 subdomain.
TEMPLATE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

ArgName = Annotated[str, StringConstraints(pattern=ARG_NAME_PATTERN, min_length=1, max_length=63)]
ArgValue = Annotated[str, StringConstraints(pattern=ARG_VALUE_PATTERN, min_length=1, max_length=253)]
TemplateName = Annotated[str, StringConstraints(pattern=TEMPLATE_NAME_PATTERN, min_length=1, max_length=253)]
Query = Annotated[str, StringConstraints(min_length=1, max_length=4096)]

# Every query field a template may carry, wire name -> attribute: the primary metric's and the guardrail's.
QUERY_FIELDS: dict[str, str] = {
    "successes": "successes",
    "trials": "trials",
    "count": "count",
    "sum": "sum",
    "sumOfSquares": "sum_of_squares",
    "numerator": "numerator",
    "denominator": "denominator",
    "numeratorSquares": "numerator_squares",
    "denominatorSquares": "denominator_squares",
    "crossProducts": "cross_products",
    "query": "query",
    "bad": "bad",
    "total": "total",
}
ARG_REFERENCE = re.compile(r"\{\{\s*args\.([^{}\s]*)\s*\}\}")


class TemplateRef(ApiModel):
    name: TemplateName
    """metadata.name of the MetricTemplate or ClusterMetricTemplate."""
    kind: TemplateKind | None = None
    """MetricTemplate (in the experiment's namespace) or ClusterMetricTemplate. When absent: the experiment's
    namespace first, then the cluster-wide template of that name."""
    args: dict[str, ArgValue] = Field(default_factory=dict, max_length=20)
    """Values of the template's arguments; an argument without a default must be given, an unknown one is an
    error."""


# Argument types, each checked with a fixed linear pattern. There is deliberately no user-supplied regular
# expression: a template is written by a tenant, and a backtracking pattern (^(a+)+b$) would stall the
# operator's event loop for every tenant (ReDoS). Use `allowed` to restrict a string to a list.
ARG_TYPES: dict[str, tuple[str, str]] = {
    "string": (ARG_VALUE_PATTERN, ARG_VALUE_RULE),
    "number": (r"^[0-9]+(\.[0-9]+)?$", "a non-negative decimal number such as 500 or 0.95"),
    "duration": (r"^([0-9]+(ms|s|m|h|d|w|y))+$", "a PromQL duration such as 30s or 5m"),
}


class TemplateArg(ApiModel):
    name: ArgName
    """Used in the template's queries as {{args.NAME}}."""
    type: Literal["string", "number", "duration"] = "string"
    """string (letters, digits, - _ . : / + * | ^ $), number (500, 0.95) or duration (30s, 5m)."""
    allowed: list[ArgValue] | None = Field(default=None, min_length=1, max_length=64)
    """The only values accepted (e.g. [source, destination]); any value of the type when absent."""
    default: ArgValue | None = None
    """Value when the reference gives none; the argument is required when absent."""
    description: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _default_is_a_value(self) -> TemplateArg:
        if self.default is not None:
            problem = self.value_problem(self.default)
            if problem:
                raise FieldError("default", problem)
        return self

    def value_problem(self, value: str) -> str | None:
        """Why `value` cannot be this argument's value, or None."""
        pattern, rule = ARG_TYPES[self.type]
        if not re.fullmatch(pattern, value):
            return f"{value!r} is not a {self.type}: use {rule}"
        if self.allowed is not None and value not in self.allowed:
            return f"{value!r} is not allowed: use one of {', '.join(self.allowed)}"
        return None


_TEMPLATE_RULES = [
    cel(
        "!has(self.args) || self.args.all(a, self.args.exists_one(b, b.name == a.name))",
        "argument names must be unique",
        ".args",
    ),
    cel(
        " || ".join(f"has(self.{name})" for name in QUERY_FIELDS),
        "a metric template needs at least one query: " + ", ".join(QUERY_FIELDS),
    ),
    cel("has(self.bad) == has(self.total)", "bad and total go together (the two counts of a ratio guardrail)", ".bad"),
]


class MetricTemplateSpec(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": {"x-kubernetes-validations": _TEMPLATE_RULES}}
    description: str | None = Field(default=None, max_length=2048)
    """What the template measures and for which mesh or gateway; shown by `mlrollouts validate`."""
    args: list[TemplateArg] = Field(default_factory=list, max_length=20)
    """Arguments the queries use as {{args.NAME}}."""
    successes: Query | None = None
    """Proportion primary metric: successes of `{{variant}}`."""
    trials: Query | None = None
    """Proportion primary metric: trials of `{{variant}}`."""
    count: Query | None = None
    """Mean or ratio primary metric: number of units."""
    sum: Query | None = None
    """Mean primary metric: sum of observations."""
    sum_of_squares: Query | None = None
    """Mean primary metric: sum of squared observations."""
    numerator: Query | None = None
    """Ratio primary metric: sum of the per-user numerators."""
    denominator: Query | None = None
    """Ratio primary metric: sum of the per-user denominators."""
    numerator_squares: Query | None = None
    """Ratio primary metric: sum of squared numerators."""
    denominator_squares: Query | None = None
    """Ratio primary metric: sum of squared denominators."""
    cross_products: Query | None = None
    """Ratio primary metric: sum of numerator × denominator."""
    query: Query | None = None
    """Threshold guardrail: one value of `{{variant}}` per check."""
    bad: Query | None = None
    """Ratio guardrail: bad events of `{{variant}}` (a counter, or increase(...[{{window}}]))."""
    total: Query | None = None
    """Ratio guardrail: all events of `{{variant}}`, read the same way as `bad`."""

    @model_validator(mode="after")
    def _consistent(self) -> MetricTemplateSpec:
        names = [a.name for a in self.args]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise FieldError("args", f"argument names must be unique, repeated: {', '.join(repeated)}")
        if not self.queries:
            raise ValueError("a metric template needs at least one query: " + ", ".join(QUERY_FIELDS))
        if (self.bad is None) != (self.total is None):
            raise FieldError("bad", "bad and total go together (the two counts of a ratio guardrail)")
        for wire, text in self.queries.items():
            undeclared = sorted({a for a in ARG_REFERENCE.findall(text) if a not in names})
            if undeclared:
                listed = ", ".join("{{args." + a + "}}" for a in undeclared)
                declared = ", ".join(names) or "none"
                raise FieldError(wire, f"uses undeclared argument {listed}; declare it in args (declared: {declared})")
        return self

    @property
    def queries(self) -> dict[str, str]:
        """The query fields present, by wire name."""
        return {wire: getattr(self, attr) for wire, attr in QUERY_FIELDS.items() if getattr(self, attr) is not None}


class TemplateMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = ""
    namespace: str | None = None


class MetricTemplate(BaseModel):
    """A MetricTemplate or ClusterMetricTemplate object as read from a file or the API server."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)
    api_version: str = Field(default=f"{GROUP}/{VERSION}", alias="apiVersion")
    kind: TemplateKind = TEMPLATE_KIND
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: MetricTemplateSpec


def parse_template(obj: dict[str, Any]) -> MetricTemplate:
    """Validate a whole template manifest; SpecError names each field (as `spec.args[0].default`) and the fix."""
    from mlrollouts.api.experiment import _problems  # one error formatter for every kind

    problems: list[SpecProblem] = []
    if obj.get("apiVersion") != f"{GROUP}/{VERSION}":
        problems.append(SpecProblem("apiVersion", f"must be {GROUP}/{VERSION}, got {obj.get('apiVersion')!r}"))
    if obj.get("kind") not in TEMPLATE_KINDS:
        problems.append(SpecProblem("kind", f"must be one of {', '.join(TEMPLATE_KINDS)}, got {obj.get('kind')!r}"))
    spec = None
    try:
        spec = MetricTemplateSpec.model_validate(obj.get("spec"))
    except ValidationError as error:
        problems.extend(_problems(error, MetricTemplateSpec, "spec"))
    if problems:
        raise SpecError(problems)
    return MetricTemplate(kind=obj["kind"], metadata=TemplateMeta.model_validate(obj.get("metadata") or {}), spec=spec)

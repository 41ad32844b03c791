"""Query templates: `{{variant}}`-style variables substituted only after their values pass strict patterns.

A query is user-written PromQL; the values come from object names. Every value must match a pattern that
cannot close a quoted label value or start new PromQL (DNS-1123 names, PromQL durations), so a query can
never be altered by an object's name. An unknown variable is a spec error naming the query field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from mlrollouts.api import ModelExperiment, ModelExperimentSpec, parse_duration, promql_duration
from mlrollouts.api.analysis import SAMPLE_QUERIES
from mlrollouts.api.base import NAME_PATTERN
from mlrollouts.api.errors import SpecError, SpecProblem
from mlrollouts.api.guardrails import COUNT_PARTS, count_key

PROMQL_DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
# A DNS-1123 subdomain (metadata.name of a custom resource may contain dots): still only [a-z0-9.-].
SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

VALUE_PATTERNS: Mapping[str, tuple[str, str, int]] = {
    "variant": (NAME_PATTERN, "a DNS-1123 label (lowercase letters, digits, '-')", 63),
    "service": (NAME_PATTERN, "a DNS-1123 label (lowercase letters, digits, '-')", 63),
    "namespace": (NAME_PATTERN, "a DNS-1123 label (lowercase letters, digits, '-')", 63),
    "experiment": (SUBDOMAIN_PATTERN, "a DNS-1123 subdomain (lowercase letters, digits, '-', '.')", 253),
    "interval": (PROMQL_DURATION_PATTERN, "a PromQL duration such as 1m or 1h30m", 32),
    "window": (PROMQL_DURATION_PATTERN, "a PromQL duration such as 1m or 1h30m", 32),
}
KNOWN_VARIABLES: tuple[str, ...] = tuple(VALUE_PATTERNS)

_VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
TEMPLATE_CACHE_SIZE = 4096
"""Distinct templates remembered (parsed once each); experiments usually share a few."""


class TemplateError(SpecError):
    """A query template that cannot be rendered safely; carries the query's field path."""


@dataclass(frozen=True)
class QueryTemplate:
    field: str  # e.g. "spec.analysis.guardrails[0].query"
    name: str  # sample query name ("trials"), guardrail name ("p95-latency") or count ("error-rate.bad")
    kind: str  # "sample" | "guardrail"
    text: str


def query_templates(spec: ModelExperimentSpec) -> list[QueryTemplate]:
    """Every inline query of the analysis block, in a stable order: primary metric samples, then guardrails.

    A `templateRef` has no query until it is resolved (metrics/template_refs.py): it is skipped here, and the
    resolved spec, which has none left, lists its queries."""
    metric = spec.analysis.primary_metric
    templates = [
        QueryTemplate(f"spec.analysis.primaryMetric.{name}", name, "sample", getattr(metric, attr))
        for name, attr in SAMPLE_QUERIES[metric.type]
        if metric.template_ref is None
    ]
    for i, g in enumerate(spec.analysis.guardrails):
        if g.template_ref is not None:
            continue
        if g.kind == "threshold":
            assert g.query is not None
            templates.append(QueryTemplate(f"spec.analysis.guardrails[{i}].query", g.name, "guardrail", g.query))
            continue
        for part in COUNT_PARTS:  # a ratio guardrail: two counts, read as "<name>.bad" and "<name>.total"
            text = getattr(g, part)
            templates.append(
                QueryTemplate(f"spec.analysis.guardrails[{i}].{part}", count_key(g.name, part), "guardrail", text)
            )
    return templates


def variables_in(template: str) -> list[str]:
    return _VARIABLE.findall(template)


def uses_window(template: str) -> bool:
    return "window" in variables_in(template)


def template_problems(template: str, field: str) -> list[SpecProblem]:
    """Unknown variables and unbalanced braces; empty when the template is well formed."""
    return list(_template_problems(template, field))


@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def _template_problems(template: str, field: str) -> tuple[SpecProblem, ...]:
    """Cached: every tick renders the same templates again (a pure function of the two strings)."""
    problems = []
    unknown = sorted({v for v in variables_in(template) if v not in VALUE_PATTERNS})
    if unknown:
        listed = ", ".join("{{" + v + "}}" for v in unknown)
        known = " ".join("{{" + v + "}}" for v in KNOWN_VARIABLES)
        word = "variable" if len(unknown) == 1 else "variables"
        problems.append(SpecProblem(field, f"unknown template {word} {listed}; known: {known}"))
    leftover = _VARIABLE.sub("", template)
    if "{{" in leftover or "}}" in leftover:
        problems.append(SpecProblem(field, "unbalanced '{{' or '}}': write variables as {{variant}}"))
    return tuple(problems)


def render(template: str, values: Mapping[str, str], field: str) -> str:
    """Substitute the variables the template uses; raise TemplateError before substituting anything unsafe."""
    problems = template_problems(template, field)
    for variable in dict.fromkeys(variables_in(template)):
        if variable not in VALUE_PATTERNS:
            continue
        problem = _value_problem(variable, values.get(variable))
        if problem:
            problems.append(SpecProblem(field, problem))
    if problems:
        raise TemplateError(problems)
    return _VARIABLE.sub(lambda match: values[match.group(1)], template)


def _value_problem(variable: str, value: str | None) -> str | None:
    pattern, description, max_length = VALUE_PATTERNS[variable]
    if value is None:
        return f"no value for {{{{{variable}}}}}"
    if len(value) > max_length or not re.fullmatch(pattern, value):
        return f"refusing to substitute {{{{{variable}}}}} = {value!r}: it must be {description}"
    return None


def window_start(experiment: ModelExperiment, now: datetime) -> datetime:
    """Start of `{{window}}`: when the experiment started; one interval back before it has started."""
    started = experiment.status.started_at
    interval = parse_duration(experiment.spec.analysis.interval)
    return started if started is not None and started < now else now - interval


def variant_values(experiment: ModelExperiment, variant: str, now: datetime) -> dict[str, str]:
    """Template values for one variant at `now` (unchecked: render() checks them)."""
    spec = experiment.spec
    service = next((v.service for v in spec.variants if v.name == variant), variant)
    return {
        "variant": variant,
        "service": service,
        "namespace": experiment.metadata.namespace,
        "experiment": experiment.metadata.name,
        "interval": promql_duration(parse_duration(spec.analysis.interval)),
        "window": promql_duration(now - window_start(experiment, now)),
    }


_CLOSERS = {")": "(", "]": "[", "}": "{"}


def promql_problem(query: str) -> str | None:
    """A syntax slip Prometheus would reject on every tick: unbalanced (), [] or {}, an unclosed string.

    Not a PromQL parser (there is none maintained for Python): the checks that need no grammar, so that
    `mlrollouts validate` and the operator reject the query at load, instead of Prometheus at each tick.
    """
    stack: list[tuple[str, int]] = []
    quote: str | None = None
    index = 0
    while index < len(query):
        char = query[index]
        if quote is not None:
            if char == "\\" and quote != "`":
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
        elif char == "#":  # a comment runs to the end of the line
            newline = query.find("\n", index)
            index = len(query) if newline < 0 else newline
        elif char in "([{":
            stack.append((char, index))
        elif char in _CLOSERS:
            if not stack or stack[-1][0] != _CLOSERS[char]:
                return f"unbalanced {char!r} at character {index + 1}: nothing to close"
            stack.pop()
        index += 1
    if quote is not None:
        return f"unterminated {quote} string"
    if stack:
        opener, where = stack[-1]
        return f"unclosed {opener!r} opened at character {where + 1}"
    return None


def validate_templates(spec: ModelExperimentSpec) -> None:
    """Load-time check of every query: unknown variables, each variant's name and service as values, and
    the PromQL syntax slips Prometheus would reject (unbalanced brackets, unclosed strings)."""
    problems: list[SpecProblem] = []
    sample_values = {"namespace": "default", "experiment": "x", "interval": "1m", "window": "1m"}
    for template in query_templates(spec):
        found = template_problems(template.text, template.field)
        for variant in spec.variants if not found else ():
            values = {**sample_values, "variant": variant.name, "service": variant.service}
            try:
                rendered = render(template.text, values, template.field)
            except TemplateError as error:
                found.extend(error.problems)
                continue
            syntax = promql_problem(rendered)
            if syntax is not None:
                found.append(SpecProblem(template.field, f"PromQL syntax: {syntax}"))
                break
        problems.extend(found)
    if problems:
        raise TemplateError(problems)


# One query for every variant: `sum(f(m{label="{{variant}}"}[r]))` is `sum by (label) (f(m{label=~"a|b"}[r]))`
# series by series, when nothing between the outer sum and the selector can drop or merge the label. Only
# that shape (and histogram_quantile over `sum by (le)`) is rewritten; anything else stays one query a variant.
_LABEL_PRESERVING = (
    *("rate", "irate", "increase", "delta", "idelta", "resets", "changes"),
    *("abs", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10"),
    *("sum_over_time", "avg_over_time", "min_over_time", "max_over_time", "count_over_time", "last_over_time"),
)
_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"[^"\\{}]*"\s*'
_SELECTOR = rf"[a-zA-Z_:][a-zA-Z0-9_:]*\s*\{{(?:{_MATCHER},)*{_MATCHER},?\}}(?:\s*\[[0-9a-zA-Z]+\])?"
_FUNCTIONS = "|".join(_LABEL_PRESERVING)
_INNER = re.compile(rf"^\s*((?:(?:{_FUNCTIONS})\s*\(\s*)*)({_SELECTOR})\s*((?:\)\s*)*)$")
_OUTER_SUM = re.compile(r"^\s*sum\s*\((.*)\)\s*$", re.S)
_OUTER_QUANTILE = re.compile(
    r"^\s*histogram_quantile\s*\(\s*[0-9.]+\s*,\s*sum\s+by\s*\(\s*le\s*\)\s*\((.*)\)\s*\)\s*$", re.S
)
_VARIANT_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"@VARIANT@"')


@dataclass(frozen=True)
class VariantGrouping:
    """How to ask one query for all variants: the template with `label="{{variant}}"` cut out, and the label."""

    label: str
    head: str  # template text before the matcher, its outer aggregation now `by (label)`
    tail: str  # template text after the matcher


@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def variant_grouping(template: str) -> VariantGrouping | None:
    """The rewrite of a template into one `by (label)` query, or None when the template's shape is not known safe.
    Cached (a pure function of the text, whose regular expressions every tick ran again)."""
    variables = variables_in(template)
    if variables.count("variant") != 1 or "service" in variables or template_problems(template, ""):
        return None
    # Other variables take the same value for every variant; a placeholder keeps their braces out of the grammar.
    marked = _VARIABLE.sub(lambda m: "@VARIANT@" if m.group(1) == "variant" else "1m", template)
    outer = _OUTER_SUM.match(marked) or _OUTER_QUANTILE.match(marked)
    inner = _INNER.match(outer.group(1)) if outer else None
    if inner is None or inner.group(1).count("(") != inner.group(3).count(")"):
        return None
    matchers = re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*\"[^\"]*\"", inner.group(2))
    variant = [m for m in matchers if _VARIANT_MATCHER.fullmatch(m)]
    if len(variant) != 1 or "@VARIANT@" in inner.group(2).replace(variant[0], ""):
        return None
    label = _VARIANT_MATCHER.fullmatch(variant[0]).group(1)  # type: ignore[union-attr]
    if label == "le":
        return None
    original = re.search(rf'{label}\s*=\s*"\{{\{{\s*variant\s*\}}\}}"', template)
    if original is None:
        return None
    head, tail = template[: original.start()], template[original.end() :]
    if outer.re is _OUTER_SUM:  # type: ignore[union-attr]
        head = re.sub(r"^\s*sum\s*\(", f"sum by ({label}) (", head, count=1)
    else:
        head = re.sub(r"sum\s+by\s*\(\s*le\s*\)", f"sum by (le, {label})", head, count=1)
    return VariantGrouping(label, head, tail)


def render_grouped(grouping: VariantGrouping, variants: list[str], values: Mapping[str, str], field: str) -> str:
    """The grouped query: every variant name checked as {{variant}} would be, then `label=~"a|b"`."""
    problems = [SpecProblem(field, p) for v in variants if (p := _value_problem("variant", v))]
    if problems:
        raise TemplateError(problems)
    matcher = f'{grouping.label}=~"{"|".join(variants)}"'  # DNS-1123 labels: no regex metacharacter but '-'
    return render(grouping.head, values, field) + matcher + render(grouping.tail, values, field)

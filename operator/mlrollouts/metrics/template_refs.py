"""Resolving `templateRef`s: the experiment's spec with every reference replaced by the template's queries.

Pure: the caller reads the templates (the operator from the API server at each tick, `mlrollouts validate`
from files or a cluster) and passes what it found; `resolve_spec` returns a spec with inline queries only,
which is all the metrics provider and the engine ever see. Lookup order for a reference without `kind`:
the MetricTemplate in the experiment's namespace, then the ClusterMetricTemplate of that name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from mlrollouts.api import ModelExperimentSpec, parse_spec
from mlrollouts.api.analysis import SAMPLE_QUERIES
from mlrollouts.api.errors import SpecError, SpecProblem
from mlrollouts.api.templates import (
    ARG_REFERENCE,
    CLUSTER_TEMPLATE_KIND,
    TEMPLATE_KIND,
    MetricTemplateSpec,
    TemplateRef,
)
from mlrollouts.metrics.templates import template_problems

# (kind, name): the namespace is implied (the experiment's for MetricTemplate, none for the cluster kind).
TemplateKey = tuple[str, str]


@dataclass(frozen=True)
class RefSite:
    path: str  # "spec.analysis.guardrails[1].templateRef"
    ref: TemplateRef
    guardrail: int | None = None  # index in analysis.guardrails; None for the primary metric


def template_refs(spec: ModelExperimentSpec) -> list[RefSite]:
    """Every reference in the spec, primary metric first."""
    analysis = spec.analysis
    sites = []
    if analysis.primary_metric.template_ref is not None:
        sites.append(RefSite("spec.analysis.primaryMetric.templateRef", analysis.primary_metric.template_ref))
    for i, guardrail in enumerate(analysis.guardrails):
        if guardrail.template_ref is not None:
            sites.append(RefSite(f"spec.analysis.guardrails[{i}].templateRef", guardrail.template_ref, i))
    return sites


def queries_fingerprint(resolved: ModelExperimentSpec) -> str:
    """Digest of every query of a resolved spec: what an edited template changes without a new generation."""
    analysis = resolved.analysis
    queries = [getattr(analysis.primary_metric, attr) for _, attr in SAMPLE_QUERIES[analysis.primary_metric.type]]
    queries += [(g.name, g.kind, g.query, g.bad, g.total) for g in analysis.guardrails]
    return hashlib.sha256(json.dumps(queries).encode()).hexdigest()[:16]


def candidates(ref: TemplateRef) -> list[TemplateKey]:
    """Where to look, in order: the given kind only, else namespaced first, then cluster-wide."""
    kinds = [ref.kind] if ref.kind else [TEMPLATE_KIND, CLUSTER_TEMPLATE_KIND]
    return [(kind, ref.name) for kind in kinds]


def describe(key: TemplateKey, namespace: str) -> str:
    kind, name = key
    return f"{kind} {namespace}/{name}" if kind == TEMPLATE_KIND else f"{kind} {name}"


Finder = Callable[[TemplateKey], MetricTemplateSpec | None]
"""Reads one template; None when there is none. Raises SpecError when the stored template is itself invalid."""


def find_all(spec: ModelExperimentSpec, find: Finder) -> dict[TemplateKey, MetricTemplateSpec]:
    """Read what the references need, in lookup order, stopping at the first hit of each."""
    found: dict[TemplateKey, MetricTemplateSpec] = {}
    for site in template_refs(spec):
        for key in candidates(site.ref):
            template = found.get(key) or find(key)
            if template is not None:
                found[key] = template
                break
    return found


async def find_all_async(
    spec: ModelExperimentSpec, find: Callable[[TemplateKey], Awaitable[MetricTemplateSpec | None]]
) -> dict[TemplateKey, MetricTemplateSpec]:
    """find_all for the operator's async API client."""
    found: dict[TemplateKey, MetricTemplateSpec] = {}
    for site in template_refs(spec):
        for key in candidates(site.ref):
            template = found.get(key) or await find(key)
            if template is not None:
                found[key] = template
                break
    return found


def resolve_spec(
    spec: ModelExperimentSpec, templates: Mapping[TemplateKey, MetricTemplateSpec], namespace: str
) -> ModelExperimentSpec:
    """The spec with inline queries in place of every reference; SpecError names each missing template,
    missing or unknown argument, or query the template lacks. A spec without references is returned as is."""
    sites = template_refs(spec)
    if not sites:
        return spec
    wire = spec.to_wire()
    analysis = wire["analysis"]
    problems: list[SpecProblem] = []
    metric = spec.analysis.primary_metric
    for site in sites:
        found = _lookup(site, templates, namespace, problems)
        if found is None:
            continue
        key, template = found
        where = f"{site.path} ({describe(key, namespace)})"
        args = _arguments(site.ref, template, where, problems)
        if args is None:
            continue
        if site.guardrail is None:
            wanted = [wire_name for wire_name, _ in SAMPLE_QUERIES[metric.type]]
            target, what = analysis["primaryMetric"], f"a {metric.type} primary metric"
        else:
            target = analysis["guardrails"][site.guardrail]
            form = _guardrail_form(target.get("type"), template)
            wanted = ["query"] if form == "threshold" else ["bad", "total"]
            target["type"] = form
            what = f"a {form} guardrail"
        missing = [name for name in wanted if name not in template.queries]
        if missing:
            have = ", ".join(template.queries) or "none"
            message = f"the template has no {', '.join(missing)} query, which {what} needs (it has: {have})"
            problems.append(SpecProblem(where, message))
            continue
        target.pop("templateRef")
        for name in wanted:
            text = _substitute(template.queries[name], args)
            problems.extend(template_problems(text, f"{where} {name}"))
            target[name] = text
    if problems:
        raise SpecError(problems)
    return parse_spec(wire)


def _lookup(
    site: RefSite, templates: Mapping[TemplateKey, MetricTemplateSpec], namespace: str, problems: list[SpecProblem]
) -> tuple[TemplateKey, MetricTemplateSpec] | None:
    for key in candidates(site.ref):
        if key in templates:
            return key, templates[key]
    looked = " or ".join(describe(key, namespace) for key in candidates(site.ref))
    problems.append(SpecProblem(site.path, f"metric template not found: no {looked}; create it or fix the name"))
    return None


def _arguments(
    ref: TemplateRef, template: MetricTemplateSpec, where: str, problems: list[SpecProblem]
) -> dict[str, str] | None:
    declared = {arg.name: arg for arg in template.args}
    found: list[SpecProblem] = []
    unknown = sorted(set(ref.args) - set(declared))
    if unknown:
        known = ", ".join(declared) or "none"
        word = "argument" if len(unknown) == 1 else "arguments"
        found.append(SpecProblem(f"{where} args", f"unknown {word} {', '.join(unknown)}; the template takes: {known}"))
    values: dict[str, str] = {}
    for name, arg in declared.items():
        value = ref.args.get(name, arg.default)
        if value is None:
            hint = f" ({arg.description})" if arg.description else ""
            found.append(SpecProblem(f"{where} args", f"missing argument {name}{hint}: it has no default"))
        elif (problem := arg.value_problem(value)) is not None:
            found.append(SpecProblem(f"{where} args.{name}", problem))
        else:
            values[name] = value
    problems.extend(found)
    return None if found else values


def _guardrail_form(given: str | None, template: MetricTemplateSpec) -> str:
    """The guardrail's `type` when given, else as inline: ratio for counts without a query, else threshold."""
    if given is not None:
        return given
    return "ratio" if template.bad is not None and template.query is None else "threshold"


def _substitute(text: str, args: Mapping[str, str]) -> str:
    """Values were checked against the safe character set by the TemplateRef model (ARG_VALUE_RULE)."""
    return ARG_REFERENCE.sub(lambda match: args[match.group(1)], text)

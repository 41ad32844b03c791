"""Resolving an experiment's templateRefs against the API server, once per tick.

Read per tick, not watched: each tick already GETs its experiment fresh (ports.Runtime.read), and a
reference costs one more GET (two for a kind-less reference to a cluster template), at most one per query
per interval (>= 5 s). That keeps no cache to go stale: a template edited or deleted takes effect at the
next tick, and a restarted operator needs no warm-up. The engine never sees a reference, only the queries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mlrollouts import GROUP, VERSION
from mlrollouts.api import ModelExperiment
from mlrollouts.api.errors import SpecError, SpecProblem
from mlrollouts.api.templates import TEMPLATE_KIND, TEMPLATE_PLURALS, MetricTemplateSpec, parse_template
from mlrollouts.metrics.template_refs import TemplateKey, describe, find_all_async, resolve_spec, template_refs
from mlrollouts.metrics.templates import validate_templates

ReadPath = Callable[[str], Awaitable[tuple[int, Any]]]


class TemplateReadFailed(OSError):
    """The API server did not answer a template read (e.g. 403: the chart's RBAC is missing): retried."""


def template_path(key: TemplateKey, namespace: str) -> str:
    kind, name = key
    scope = f"/namespaces/{namespace}" if kind == TEMPLATE_KIND else ""
    return f"/apis/{GROUP}/{VERSION}{scope}/{TEMPLATE_PLURALS[kind]}/{name}"


class TemplateResolver:
    """`resolve(experiment)`: the experiment with inline queries; SpecError (→ Invalid) names what is missing."""

    def __init__(self, read_path: ReadPath) -> None:
        self.read_path = read_path

    async def resolve(self, experiment: ModelExperiment) -> ModelExperiment:
        spec = experiment.spec
        if not template_refs(spec):
            return experiment
        namespace = experiment.metadata.namespace

        async def find(key: TemplateKey) -> MetricTemplateSpec | None:
            status, body = await self.read_path(template_path(key, namespace))
            if status == 404:
                return None
            if not 200 <= status < 300:
                detail = body.get("message") if isinstance(body, dict) else body
                raise TemplateReadFailed(f"reading {describe(key, namespace)} failed with HTTP {status}: {detail}")
            try:
                return parse_template(body).spec
            except SpecError as error:
                problems = [SpecProblem(f"{describe(key, namespace)} {p.path}", p.message) for p in error.problems]
                raise SpecError(problems) from None

        resolved = resolve_spec(spec, await find_all_async(spec, find), namespace)
        validate_templates(resolved)
        return experiment.model_copy(update={"spec": resolved})


async def no_templates(experiment: ModelExperiment) -> ModelExperiment:
    """For runtimes without an API server (tests, simulations): a reference cannot be resolved there."""
    sites = template_refs(experiment.spec)
    if sites:
        raise SpecError(
            [SpecProblem(s.path, "metric templates cannot be read here: write the queries inline") for s in sites]
        )
    return experiment

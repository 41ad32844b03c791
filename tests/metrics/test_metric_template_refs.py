"""templateRef resolution: arguments checked by name, lookup order, and the resolved spec has inline queries."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from mlrollouts.api import ModelExperiment, SpecError, parse_experiment
from mlrollouts.api.templates import MetricTemplateSpec, parse_template
from mlrollouts.controller.templates import TemplateReadFailed, TemplateResolver, template_path
from mlrollouts.metrics.template_refs import find_all, resolve_spec
from mlrollouts.metrics.templates import query_templates

ERRORS = {
    "description": "5xx share",
    "args": [
        {"name": "reporter", "default": "destination", "allowed": ["source", "destination"]},
        {"name": "code", "description": "the status class"},
    ],
    "bad": 'sum(reqs_total{r="{{args.reporter}}",w="{{variant}}",code=~"{{args.code}}"})',
    "total": 'sum(reqs_total{r="{{args.reporter}}",w="{{variant}}"})',
}
SUCCESS = {"successes": 'sum(ok_total{w="{{variant}}"})', "trials": 'sum(all_total{w="{{variant}}"})'}


def experiment(primary_ref: dict | None = None, guardrail_ref: dict | None = None, **guardrail: Any) -> dict:
    primary: dict[str, Any] = {"name": "success"}
    primary.update({"templateRef": primary_ref} if primary_ref else SUCCESS)
    return {
        "apiVersion": "mlrollouts.dev/v1alpha1",
        "kind": "ModelExperiment",
        "metadata": {"name": "exp", "namespace": "team-a"},
        "spec": {
            "strategy": "canary",
            "champion": {"name": "v1", "service": "v1"},
            "challengers": [{"name": "v2", "service": "v2"}],
            "traffic": {"provider": "istio", "istio": {"virtualService": "vs"}},
            "canary": {"steps": [50, 100], "stepDuration": "1m"},
            "analysis": {
                "primaryMetric": primary,
                "guardrails": [{"name": "errors", "templateRef": guardrail_ref or {"name": "errors"}, **guardrail}],
            },
        },
    }


def spec(obj: dict) -> MetricTemplateSpec:
    return MetricTemplateSpec.model_validate(obj)


CLUSTER = {("ClusterMetricTemplate", "errors"): spec(ERRORS), ("ClusterMetricTemplate", "success"): spec(SUCCESS)}


def resolve(manifest: dict, templates: dict = CLUSTER) -> Any:
    parsed = parse_experiment(manifest)
    return resolve_spec(parsed.spec, templates, "team-a")


def test_arguments_are_substituted_and_the_resolved_guardrail_is_a_ratio_with_inline_counts() -> None:
    resolved = resolve(experiment(None, {"name": "errors", "args": {"code": "5.."}}, max=0.1))
    guardrail = resolved.analysis.guardrails[0]
    assert guardrail.template_ref is None and guardrail.kind == "ratio"
    assert guardrail.bad == 'sum(reqs_total{r="destination",w="{{variant}}",code=~"5.."})'
    assert [t.name for t in query_templates(resolved)] == ["successes", "trials", "errors.bad", "errors.total"]


def test_primary_metric_takes_its_type_queries_from_the_template() -> None:
    resolved = resolve(experiment({"name": "success"}, {"name": "errors", "args": {"code": "5.."}}, max=0.1))
    assert resolved.analysis.primary_metric.successes == SUCCESS["successes"]
    assert resolved.analysis.primary_metric.template_ref is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({}, "missing argument code (the status class): it has no default"),
        ({"code": "5..", "codes": "4.."}, "unknown argument codes; the template takes: reporter, code"),
        ({"code": "5..", "reporter": "gateway"}, "'gateway' is not allowed: use one of source, destination"),
    ],
)
def test_a_wrong_argument_is_named(args: dict, says: str) -> None:
    with pytest.raises(SpecError) as raised:
        resolve(experiment(None, {"name": "errors", "args": args}, max=0.1))
    assert says in str(raised.value)
    assert "spec.analysis.guardrails[0].templateRef (ClusterMetricTemplate errors)" in str(raised.value)


def test_an_argument_value_that_could_break_out_of_a_label_value_is_refused_by_the_schema() -> None:
    with pytest.raises(SpecError) as raised:
        parse_experiment(experiment(None, {"name": "errors", "args": {"code": '5.."} or vector(1) #'}}, max=0.1))
    assert "spec.analysis.guardrails[0].templateRef.args.code" in str(raised.value)


def test_missing_template_names_every_place_looked() -> None:
    with pytest.raises(SpecError) as raised:
        resolve(experiment(None, {"name": "nope"}, max=0.1))
    assert "no MetricTemplate team-a/nope or ClusterMetricTemplate nope" in str(raised.value)


def test_template_without_the_query_the_metric_type_needs_is_named() -> None:
    with pytest.raises(SpecError) as raised:
        resolve(
            experiment({"name": "errors", "args": {"code": "5.."}}, {"name": "errors", "args": {"code": "5"}}, max=0.1)
        )
    assert "has no successes, trials query, which a proportion primary metric needs (it has: bad, total)" in str(
        raised.value
    )


def test_namespaced_template_wins_over_the_cluster_one_of_the_same_name() -> None:
    local = spec({**ERRORS, "args": [{"name": "code", "default": "5.."}, {"name": "reporter", "default": "source"}]})
    manifest = experiment(None, {"name": "errors"}, max=0.1)
    seen: list[tuple[str, str]] = []

    def find(key: tuple[str, str]) -> MetricTemplateSpec | None:
        seen.append(key)
        return {("MetricTemplate", "errors"): local, **CLUSTER}.get(key)

    parsed = parse_experiment(manifest)
    resolved = resolve_spec(parsed.spec, find_all(parsed.spec, find), "team-a")
    assert seen == [("MetricTemplate", "errors")]
    assert 'r="source"' in (resolved.analysis.guardrails[0].bad or "")


def test_template_uses_only_declared_arguments() -> None:
    with pytest.raises(SpecError) as raised:
        parse_template(
            {
                "apiVersion": "mlrollouts.dev/v1alpha1",
                "kind": "MetricTemplate",
                "metadata": {"name": "t"},
                "spec": {"query": 'up{job="{{args.job}}"}'},
            }
        )
    assert "spec.query: uses undeclared argument {{args.job}}; declare it in args (declared: none)" in str(raised.value)


def test_the_controller_reads_templates_at_every_tick_so_an_edit_applies_at_the_next() -> None:
    store: dict[str, Any] = {
        template_path(("ClusterMetricTemplate", "errors"), "team-a"): {
            "apiVersion": "mlrollouts.dev/v1alpha1",
            "kind": "ClusterMetricTemplate",
            "metadata": {"name": "errors"},
            "spec": copy.deepcopy(ERRORS),
        }
    }

    async def read_path(path: str) -> tuple[int, Any]:
        return (200, store[path]) if path in store else (404, {"message": "not found"})

    resolver = TemplateResolver(read_path)
    manifest: ModelExperiment = parse_experiment(experiment(None, {"name": "errors", "args": {"code": "5.."}}, max=0.1))
    first = asyncio.run(resolver.resolve(manifest))
    store[template_path(("ClusterMetricTemplate", "errors"), "team-a")]["spec"]["total"] = "sum(other_total)"
    second = asyncio.run(resolver.resolve(manifest))
    assert first.spec.analysis.guardrails[0].total != second.spec.analysis.guardrails[0].total == "sum(other_total)"
    store.clear()
    with pytest.raises(SpecError, match="ClusterMetricTemplate errors"):
        asyncio.run(resolver.resolve(manifest))


def test_argument_types_are_checked_without_any_user_regular_expression() -> None:
    typed = spec({"args": [{"name": "ms", "type": "number"}], "query": 'sum(x_bucket{le="{{args.ms}}"})'})
    manifest = experiment(None, {"name": "slow", "args": {"ms": "5OO"}}, max=0.1)
    with pytest.raises(SpecError) as raised:
        resolve(manifest, {("ClusterMetricTemplate", "slow"): typed})
    assert "args.ms: '5OO' is not a number: use a non-negative decimal number such as 500 or 0.95" in str(raised.value)
    manifest["spec"]["analysis"]["guardrails"][0]["templateRef"]["args"]["ms"] = "500"
    resolved = resolve(manifest, {("ClusterMetricTemplate", "slow"): typed})
    assert resolved.analysis.guardrails[0].query == 'sum(x_bucket{le="500"})'


def test_a_default_outside_the_allowed_values_is_refused_in_the_template() -> None:
    with pytest.raises(ValueError, match="'edge' is not allowed: use one of source, destination"):
        spec({"args": [{"name": "r", "allowed": ["source", "destination"], "default": "edge"}], "query": "up"})


def _resolver(store: dict[str, tuple[int, Any]]) -> TemplateResolver:
    async def read_path(path: str) -> tuple[int, Any]:
        return store.get(path, (404, {"message": "not found"}))

    return TemplateResolver(read_path)


def test_the_controller_never_reads_another_namespaces_metric_template() -> None:
    other = {
        "apiVersion": "mlrollouts.dev/v1alpha1",
        "kind": "MetricTemplate",
        "metadata": {"name": "errors", "namespace": "team-b"},
        "spec": {**ERRORS, "args": [{"name": "code", "default": "5.."}, {"name": "reporter", "default": "x"}]},
    }
    resolver = _resolver({template_path(("MetricTemplate", "errors"), "team-b"): (200, other)})
    manifest = parse_experiment(experiment(None, {"name": "errors", "kind": "MetricTemplate"}, max=0.1))
    with pytest.raises(SpecError, match="no MetricTemplate team-a/errors"):
        asyncio.run(resolver.resolve(manifest))


def test_a_refused_template_read_is_an_outage_to_retry_not_an_invalid_spec() -> None:
    path = template_path(("ClusterMetricTemplate", "errors"), "team-a")
    resolver = _resolver({path: (403, {"message": "clustermetrictemplates is forbidden"})})
    manifest = parse_experiment(experiment(None, {"name": "errors", "kind": "ClusterMetricTemplate"}, max=0.1))
    with pytest.raises(TemplateReadFailed, match="HTTP 403: clustermetrictemplates is forbidden"):
        asyncio.run(resolver.resolve(manifest))

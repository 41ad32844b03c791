"""Template rendering: every variable substituted, unknown ones and unsafe values refused before any query."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from mlrollouts.api import ModelExperiment, SpecError
from mlrollouts.metrics.prometheus import PrometheusMetrics
from mlrollouts.metrics.templates import (
    TemplateError,
    render,
    render_grouped,
    validate_templates,
    variant_grouping,
    variant_values,
)

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
VALUES = {
    "variant": "churn-v3",
    "service": "svc-churn-v3",
    "namespace": "ml",
    "experiment": "churn-test",
    "interval": "1m",
    "window": "2h5m",
}


def test_every_variable_is_substituted_with_or_without_spaces() -> None:
    template = (
        'sum(increase(x{variant="{{variant}}",svc="{{ service }}",ns="{{namespace}}",exp="{{experiment}}"}'
        "[{{window}}])) / sum(rate(y[{{interval}}]))"
    )
    assert render(template, VALUES, "spec.analysis.primaryMetric.trials") == (
        'sum(increase(x{variant="churn-v3",svc="svc-churn-v3",ns="ml",exp="churn-test"}[2h5m])) / sum(rate(y[1m]))'
    )


def test_values_come_from_the_experiment_and_its_clock(experiment_factory: Callable[..., ModelExperiment]) -> None:
    experiment = experiment_factory(started_at=NOW - timedelta(hours=2, minutes=5, seconds=3), interval="90s")
    values = variant_values(experiment, "churn-v3", NOW)
    assert values == {
        "variant": "churn-v3",
        "service": "svc-churn-v3",
        "namespace": "ml",
        "experiment": "churn-test",
        "interval": "1m30s",
        "window": "2h5m3s",
    }
    not_started = experiment_factory(interval="45s")
    assert variant_values(not_started, "churn-v2", NOW)["window"] == "45s"


def test_unknown_variable_is_a_spec_error_naming_the_query_field(
    experiment_factory: Callable[..., ModelExperiment],
) -> None:
    experiment = experiment_factory(
        guardrails=[{"name": "errors", "query": 'sum(rate(e{variant="{{varaint}}"}[1m]))', "max": 0.1}]
    )
    with pytest.raises(SpecError) as caught:
        validate_templates(experiment.spec)
    assert str(caught.value) == (
        "spec.analysis.guardrails[0].query: unknown template variable {{varaint}}; "
        "known: {{variant}} {{service}} {{namespace}} {{experiment}} {{interval}} {{window}}"
    )
    assert caught.value.problems[0].path == "spec.analysis.guardrails[0].query"


def test_unbalanced_braces_are_reported(experiment_factory: Callable[..., ModelExperiment]) -> None:
    primary = {"name": "m", "successes": 'sum(x{v="{{variant}"})', "trials": 'sum(y{v="{{variant}}"})'}
    with pytest.raises(TemplateError, match=r"spec.analysis.primaryMetric.successes: unbalanced"):
        validate_templates(experiment_factory(primary=primary).spec)


def test_a_valid_spec_passes_validation(experiment_factory: Callable[..., ModelExperiment]) -> None:
    guardrail = {
        "name": "p95",
        "query": 'histogram_quantile(0.95, sum by (le) (rate(b{variant="{{variant}}"}[{{interval}}])))',
        "max": 1,
    }
    validate_templates(experiment_factory(guardrails=[guardrail]).spec)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("variant", 'a"} or vector(1) #'),
        ("variant", "Churn-V3"),
        ("namespace", 'ml"}) or on() vector(1'),
        ("experiment", "x\ny"),
        ("interval", "5m] or vector(1) ["),
        ("window", "1h offset 1d"),
    ],
)
def test_an_unsafe_value_is_refused_and_never_substituted(variable: str, value: str) -> None:
    template = 'sum(rate(x{v="{{variant}}",n="{{namespace}}",e="{{experiment}}"}[{{interval}}] offset {{window}}))'
    with pytest.raises(TemplateError) as caught:
        render(template, {**VALUES, variable: value}, "spec.analysis.primaryMetric.trials")
    message = str(caught.value)
    assert message.startswith(f"spec.analysis.primaryMetric.trials: refusing to substitute {{{{{variable}}}}} = ")
    assert repr(value) in message


def test_a_template_rendered_again_reports_each_problem_once() -> None:
    """Templates are parsed once and remembered; a refused value found on one tick must not pile onto the next."""
    template = 'sum(x{v="{{variant}}"})'
    for tick in range(3):
        with pytest.raises(TemplateError) as caught:
            render(template, {"variant": f"Bad-{tick}"}, "spec.analysis.primaryMetric.trials")
        assert [problem.message for problem in caught.value.problems] == [
            f"refusing to substitute {{{{variant}}}} = 'Bad-{tick}': it must be a DNS-1123 label (lowercase letters, "
            "digits, '-')"
        ]
    assert render(template, {"variant": "ok"}, "f") == 'sum(x{v="ok"})'


def test_a_value_the_template_does_not_use_is_not_required() -> None:
    assert render('sum(x{v="{{variant}}"})', {"variant": "churn-v2"}, "f") == 'sum(x{v="churn-v2"})'


async def test_injection_through_an_object_name_sends_no_query(
    experiment_factory: Callable[..., ModelExperiment], proxy_factory: Callable[..., object]
) -> None:
    """A namespace crafted to break out of the label value: the provider refuses before any HTTP request."""
    primary = {
        "name": "m",
        "successes": 'sum(x{ns="{{namespace}}",v="{{variant}}"})',
        "trials": 'sum(y{ns="{{namespace}}",v="{{variant}}"})',
    }
    clean = experiment_factory(primary=primary)
    hostile = clean.model_copy(
        update={"metadata": clean.metadata.model_copy(update={"namespace": 'ml"} or vector(1) #'})}
    )
    with proxy_factory("http://127.0.0.1:9", "unused") as (url, seen):
        observations = await PrometheusMetrics(url, timeout_seconds=2).observe(hostile, NOW)
    assert seen.requests == []
    assert observations.variants["churn-v2"].samples == {"successes": None, "trials": None}
    assert observations.variants["churn-v3"].samples == {"successes": None, "trials": None}
    assert len(observations.errors) == 4
    assert "refusing to substitute {{namespace}} = 'ml\"} or vector(1) #'" in observations.errors[0]


@pytest.mark.parametrize(
    ("template", "grouped"),
    [
        (
            'sum(model_outcomes_total{variant="{{variant}}",outcome="success"})',
            'sum by (variant) (model_outcomes_total{variant=~"churn-v2|churn-v3",outcome="success"})',
        ),
        (
            'sum(increase(model_outcomes_total{variant="{{variant}}"}[{{window}}]))',
            'sum by (variant) (increase(model_outcomes_total{variant=~"churn-v2|churn-v3"}[5m]))',
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(latency_bucket{model = '{{variant}}'}[{{interval}}])))",
            None,  # single quotes are not in the recognised shape: one query per variant, still correct
        ),
        (
            'histogram_quantile(0.95, sum by (le) (rate(latency_bucket{model="{{variant}}"}[{{interval}}])))',
            'histogram_quantile(0.95, sum by (le, model) (rate(latency_bucket{model=~"churn-v2|churn-v3"}[1m])))',
        ),
        ('sum(x{ns="{{namespace}}", model="{{variant}}"})', 'sum by (model) (x{ns="ml", model=~"churn-v2|churn-v3"})'),
    ],
)
def test_a_template_summing_one_selector_becomes_one_query_for_every_variant(
    template: str, grouped: str | None
) -> None:
    grouping = variant_grouping(template)
    values = {"namespace": "ml", "window": "5m", "interval": "1m"}
    rendered = render_grouped(grouping, ["churn-v2", "churn-v3"], values, "f") if grouping else None
    assert rendered == grouped


@pytest.mark.parametrize(
    "template",
    [
        # a ratio of two sums: grouping each side is possible, the whole is not one `sum by`
        'sum(rate(errors{variant="{{variant}}"}[1m])) / sum(rate(requests{variant="{{variant}}"}[1m]))',
        'model_outcomes_total{variant="{{variant}}"}',  # no aggregation: several series is the user's error to see
        'sum(max(x{variant="{{variant}}"}))',  # an inner aggregation drops the label
        'sum(label_replace(x{variant="{{variant}}"}, "variant", "z", "", ""))',  # rewrites the label
        'sum(x{variant=~"{{variant}}"})',  # a regex matcher: the value is not matched exactly
        'sum(x{variant="{{variant}}"}) by (zone)',  # several series per variant
        'sum(x{v="a,variant=\\"{{variant}}\\""})',  # the variable inside another label's value
        'sum(x{service="{{service}}"})',
        'sum(x{le="{{variant}}"})',
        'sum(x{variant="{{variant}}", other="{{variant}}"})',
    ],
)
def test_a_template_whose_shape_could_change_the_answer_stays_one_query_per_variant(template: str) -> None:
    assert variant_grouping(template) is None


def test_a_grouped_query_refuses_a_variant_name_it_could_not_quote() -> None:
    grouping = variant_grouping('sum(x{variant="{{variant}}"})')
    assert grouping is not None
    with pytest.raises(TemplateError, match="refusing to substitute"):
        render_grouped(grouping, ["churn-v2", 'a"}) or vector(1) #'], {}, "spec.analysis.primaryMetric.trials")

"""One bad manifest per rule: the CRD layer (schema + CEL, as the API server) and the operator layer
(pydantic) must both reject it, each naming the field and saying what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from api_support import load_example, python_problems

from mlrollouts.api.crd_validation import validate_manifest
from mlrollouts.cli.api_commands import check_manifest

Manifest = dict[str, Any]


@dataclass(frozen=True)
class BadCase:
    id: str
    example: str
    mutate: Callable[[Manifest], None]
    path: str  # the field path both layers must name
    says: str  # a fragment of the explanation both layers must give


def _set(dotted: str, value: Any) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        *parents, last = dotted.split(".")
        node = manifest
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value

    return mutate


def _delete(dotted: str) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        *parents, last = dotted.split(".")
        node = manifest
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return mutate


def _both(*mutations: Callable[[Manifest], None]) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        for mutation in mutations:
            mutation(manifest)

    return mutate


_PROM = "spec.analysis.primaryMetric"
CASES = [
    BadCase(
        "steps-not-increasing",
        "churn-v3.yaml",
        _set("spec.canary.steps", [5, 50, 25, 100]),
        "spec.canary.steps",
        "strictly increasing",
    ),
    BadCase(
        "steps-not-ending-at-100",
        "churn-v3.yaml",
        _set("spec.canary.steps", [5, 10, 50]),
        "spec.canary.steps",
        "end at 100",
    ),
    BadCase(
        "split-not-summing-to-100",
        "abtest-gatewayapi.yaml",
        _set("spec.abTest.split", {"recs-v2": 50, "recs-v3": 25, "recs-v3-distilled": 20}),
        "spec.abTest.split",
        "sum to 100",
    ),
    BadCase(
        "split-names-unknown-variant",
        "abtest-gatewayapi.yaml",
        _set("spec.abTest.split", {"recs-v2": 50, "recs-v3": 25, "recs-v4": 25}),
        "spec.abTest.split",
        "every challenger, and nothing else",
    ),
    BadCase("canary-block-missing", "churn-v3.yaml", _delete("spec.canary"), "spec.canary", "needs the canary block"),
    BadCase(
        "abtest-block-missing",
        "abtest-gatewayapi.yaml",
        _delete("spec.abTest"),
        "spec.abTest",
        "needs the abTest block",
    ),
    BadCase(
        "shadow-block-missing", "shadow-istio.yaml", _delete("spec.shadow"), "spec.shadow", "needs the shadow block"
    ),
    BadCase(
        "bandit-block-missing", "bandit-gateway.yaml", _delete("spec.bandit"), "spec.bandit", "needs the bandit block"
    ),
    BadCase(
        "duplicate-variant-names",
        "bandit-gateway.yaml",
        _set("spec.challengers.1.name", "headline-v1"),
        "spec.challengers",
        "must be unique",
    ),
    BadCase(
        "variant-name-not-label-safe",
        "churn-v3.yaml",
        _set("spec.challengers.0.name", "Churn_V2"),
        "spec.challengers[0].name",
        "not a valid name",
    ),
    BadCase(
        "provider-block-missing",
        "churn-v3.yaml",
        _delete("spec.traffic.istio"),
        "spec.traffic.istio",
        "must be set exactly when traffic.provider is istio",
    ),
    BadCase(
        "service-block-missing",
        "canary-service.yaml",
        _delete("spec.traffic.service"),
        "spec.traffic.service",
        "must be set exactly when traffic.provider is service",
    ),
    BadCase(
        "kserve-block-missing",
        "canary-kserve.yaml",
        _delete("spec.traffic.kserve"),
        "spec.traffic.kserve",
        "must be set exactly when traffic.provider is kserve",
    ),
    BadCase(
        "shadow-with-kserve-provider",
        "shadow-istio.yaml",
        _both(
            _delete("spec.traffic.istio"),
            _set("spec.traffic.provider", "kserve"),
            _set("spec.traffic.kserve", {"inferenceService": "churn"}),
        ),
        "spec.strategy",
        "use strategy canary",
    ),
    BadCase(
        "wrong-provider-block",
        "churn-v3.yaml",
        _set("spec.traffic.gatewayAPI", {"httpRoute": "churn"}),
        "spec.traffic.gatewayAPI",
        "must be set exactly when traffic.provider is gatewayAPI",
    ),
    BadCase(
        "gateway-block-with-other-provider",
        "churn-v3.yaml",
        _set("spec.traffic.gateway", {}),
        "spec.traffic.gateway",
        "only be set when traffic.provider is gateway",
    ),
    BadCase(
        "unknown-field-near-miss",
        "churn-v3.yaml",
        _set("spec.canary.stepDuraton", "5m"),
        "spec.canary.stepDuraton",
        "did you mean 'stepDuration'?",
    ),
    BadCase(
        "guardrail-without-bound",
        "churn-v3.yaml",
        _delete("spec.analysis.guardrails.0.max"),
        "spec.analysis.guardrails[0]",
        "needs at least one bound",
    ),
    BadCase(
        "guardrail-min-above-max",
        "churn-v3.yaml",
        _set("spec.analysis.guardrails.0.min", 0.9),
        "spec.analysis.guardrails[0].min",
        "min must not exceed max",
    ),
    BadCase(
        "guardrail-without-query-or-counts",
        "churn-v3.yaml",
        _delete("spec.analysis.guardrails.0.query"),
        "spec.analysis.guardrails[0]",
        "needs query (type: threshold), bad and total (type: ratio), or a templateRef",
    ),
    BadCase(
        "guardrail-with-template-ref-and-query",
        "churn-v3.yaml",
        _set("spec.analysis.guardrails.0.templateRef", {"name": "istio-latency-p95"}),
        "spec.analysis.guardrails[0].templateRef",
        "templateRef takes the queries from the template",
    ),
    BadCase(
        "primary-metric-with-template-ref-and-queries",
        "churn-v3.yaml",
        _set("spec.analysis.primaryMetric.templateRef", {"name": "istio-success-rate"}),
        "spec.analysis.primaryMetric.templateRef",
        "templateRef takes the queries from the template",
    ),
    BadCase(
        "ratio-guardrail-with-query",
        "canary-istio.yaml",
        _set("spec.analysis.guardrails.1.query", "sum(rate(x[1m]))"),
        "spec.analysis.guardrails[1].query",
        "query is for type: threshold; a ratio guardrail counts events with bad and total",
    ),
    BadCase(
        "ratio-guardrail-without-total",
        "canary-istio.yaml",
        _delete("spec.analysis.guardrails.1.total"),
        "spec.analysis.guardrails[1]",
        "needs both bad and total",
    ),
    BadCase(
        "threshold-guardrail-with-counts",
        "canary-istio.yaml",
        _set("spec.analysis.guardrails.1.type", "threshold"),
        "spec.analysis.guardrails[1].type",
        "bad and total belong to type: ratio",
    ),
    BadCase(
        "ratio-guardrail-with-min",
        "canary-istio.yaml",
        _set("spec.analysis.guardrails.1.min", 0.001),
        "spec.analysis.guardrails[1].min",
        "use max, maxIncrease or maxRatio, not min",
    ),
    BadCase(
        "ratio-guardrail-with-failure-limit",
        "canary-istio.yaml",
        _set("spec.analysis.guardrails.1.failureLimit", 2),
        "spec.analysis.guardrails[1].failureLimit",
        "failureLimit is for type: threshold",
    ),
    BadCase(
        "threshold-guardrail-with-alpha",
        "churn-v3.yaml",
        _set("spec.analysis.guardrails.0.alpha", 0.01),
        "spec.analysis.guardrails[0].alpha",
        "alpha is for type: ratio",
    ),
    BadCase(
        "threshold-guardrail-with-power",
        "churn-v3.yaml",
        _set("spec.analysis.guardrails.0.power", 0.9),
        "spec.analysis.guardrails[0].power",
        "power is for type: ratio",
    ),
    BadCase(
        "threshold-guardrail-with-detectable-breach",
        "churn-v3.yaml",
        _set("spec.analysis.guardrails.0.detectableBreach", 3),
        "spec.analysis.guardrails[0].detectableBreach",
        "detectableBreach is for type: ratio",
    ),
    BadCase(
        "ratio-guardrail-power-one",
        "canary-istio.yaml",
        _set("spec.analysis.guardrails.1.power", 1),
        "spec.analysis.guardrails[1].power",
        "0.999",
    ),
    BadCase(
        "ratio-guardrail-detectable-breach-one",
        "canary-istio.yaml",
        _set("spec.analysis.guardrails.1.detectableBreach", 1),
        "spec.analysis.guardrails[1].detectableBreach",
        "1",
    ),
    BadCase(
        "ratio-guardrail-max-above-one",
        "canary-istio.yaml",
        _set("spec.analysis.guardrails.1.max", 1.5),
        "spec.analysis.guardrails[1].max",
        "strictly between 0 and 1",
    ),
    BadCase(
        "duplicate-guardrail-names",
        "churn-v3.yaml",
        _set("spec.analysis.guardrails.1.name", "p95-latency"),
        "spec.analysis.guardrails",
        "guardrail names must be unique",
    ),
    BadCase(
        "proportion-metric-missing-trials",
        "churn-v3.yaml",
        _delete(f"{_PROM}.trials"),
        _PROM,
        "needs the successes and trials queries",
    ),
    BadCase(
        "mean-metric-missing-sum-of-squares",
        "canary-service.yaml",
        _delete(f"{_PROM}.sumOfSquares"),
        _PROM,
        "needs the count, sum and sumOfSquares queries",
    ),
    BadCase(
        "ratio-metric-missing-cross-products",
        "canary-service.yaml",
        _both(_set(f"{_PROM}.type", "ratio"), _set(f"{_PROM}.numerator", "y"), _set(f"{_PROM}.denominator", "x")),
        _PROM,
        "a ratio metric needs the count, numerator, denominator, numeratorSquares, denominatorSquares",
    ),
    BadCase(
        "bad-duration",
        "churn-v3.yaml",
        _set("spec.canary.stepDuration", "10 minutes"),
        "spec.canary.stepDuration",
        "is not a duration",
    ),
    BadCase(
        "non-inferiority-margin-above-one",
        "churn-v3.yaml",
        _set(f"{_PROM}.nonInferiorityMargin", 1.5),
        f"{_PROM}.nonInferiorityMargin",
        "1",
    ),
    BadCase(
        "srm-feedback-delay-not-a-duration",
        "churn-v3.yaml",
        _set("spec.analysis.statistics.srmFeedbackDelay", "five minutes"),
        "spec.analysis.statistics.srmFeedbackDelay",
        "duration",
    ),
    BadCase(
        "bandit-recheck-window-not-a-duration",
        "bandit-gateway.yaml",
        _set("spec.bandit.recheckWindow", "6 hours"),
        "spec.bandit.recheckWindow",
        "duration",
    ),
    BadCase(
        "alpha-out-of-range",
        "churn-v3.yaml",
        _set("spec.analysis.statistics.alpha", 0.7),
        "spec.analysis.statistics.alpha",
        "0.5",
    ),
    BadCase(
        "canary-with-two-challengers",
        "churn-v3.yaml",
        _set("spec.challengers", [{"name": "churn-v3", "service": "a"}, {"name": "churn-v4", "service": "b"}]),
        "spec.challengers",
        "exactly one challenger",
    ),
    BadCase(
        "shadow-with-service-provider",
        "shadow-istio.yaml",
        _both(
            _delete("spec.traffic.istio"),
            _set("spec.traffic.provider", "service"),
            _set("spec.traffic.service", {"name": "churn"}),
        ),
        "spec.traffic.provider",
        "provider that can mirror",
    ),
    BadCase(
        "bandit-floor-times-arms-over-one",
        "bandit-gateway.yaml",
        _set("spec.bandit.minExploration", 0.5),
        "spec.bandit.minExploration",
        "must be at most 1",
    ),
    BadCase(
        "champion-and-challenger-on-one-service",
        "churn-v3.yaml",
        _set("spec.challengers.0.service", "churn-v2"),
        "spec.challengers",
        "each variant needs its own service",
    ),
    BadCase(
        "two-variants-scaling-one-deployment",
        "canary-service.yaml",
        _set("spec.challengers.0.deployment", "ranker-v4"),
        "spec.challengers",
        "each variant needs its own Deployment",
    ),
    BadCase("wrong-strategy-enum", "churn-v3.yaml", _set("spec.strategy", "blueGreen"), "spec.strategy", "canary"),
    BadCase(
        "required-field-missing", "churn-v3.yaml", _delete("spec.champion.service"), "spec.champion.service", "required"
    ),
    BadCase(
        "wrong-type", "churn-v3.yaml", _set("spec.metricsFailureLimit", "five"), "spec.metricsFailureLimit", "integer"
    ),
]


def _bad(case: BadCase) -> Manifest:
    manifest = load_example(case.example)
    case.mutate(manifest)
    return manifest


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_crd_layer_rejects_naming_the_field(case: BadCase) -> None:
    problems = validate_manifest(_bad(case))
    matching = [p for p in problems if p.path == case.path]
    assert matching, f"no problem at {case.path}: {problems}"
    assert any(case.says in p.message for p in matching), matching


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_operator_layer_rejects_naming_the_field(case: BadCase) -> None:
    problems = python_problems(_bad(case))
    matching = [p for p in problems if p.path == case.path]
    assert matching, f"no problem at {case.path}: {problems}"
    assert any(case.says in p.message for p in matching), matching


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_combined_report_names_each_broken_rule_once(case: BadCase) -> None:
    assert [p.path for p in check_manifest(_bad(case))].count(case.path) == 1


def test_every_case_starts_from_a_valid_example() -> None:
    for example in {case.example for case in CASES}:
        assert check_manifest(load_example(example)) == [], example


def test_corpus_covers_every_cel_rule_of_the_crd() -> None:
    """Adding a CEL rule without a bad manifest that breaks it fails here."""
    from mlrollouts.cli.api_commands import _cel_messages

    broken = {p.message for case in CASES for p in validate_manifest(_bad(case))}
    assert _cel_messages() <= broken, sorted(_cel_messages() - broken)

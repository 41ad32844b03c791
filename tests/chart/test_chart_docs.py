"""docs/argocd.md stays true: its Lua is the shipped script, its Application trusts our field manager and its
jq variant's paths hit the fields the operator writes."""

from __future__ import annotations

import re
from typing import Any

import yaml
from chart_support import CHART_DIR, REPO, chart

from mlrollouts.routing.kserve import PERCENT_PATH
from mlrollouts.routing.kube import FIELD_MANAGER

ARGOCD_DOC = (REPO / "docs" / "argocd.md").read_text()
YAML_BLOCKS = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", ARGOCD_DOC, re.DOTALL)]


def jq_select(obj: Any, path: str) -> list[Any]:
    """Evaluate the `.a.b[].c` subset of jq that Argo CD's jqPathExpressions use here."""
    values = [obj]
    for step in path.lstrip(".").split("."):
        name, iterate = step.removesuffix("[]"), step.endswith("[]")
        values = [v[name] for v in values if isinstance(v, dict) and name in v]
        if iterate:
            values = [item for v in values for item in v]
    return values


def test_documented_health_check_is_the_shipped_script() -> None:
    (config_map,) = [b for b in YAML_BLOCKS if b.get("kind") == "ConfigMap"]
    lua = config_map["data"]["resource.customizations.health.mlrollouts.dev_ModelExperiment"]
    assert lua == (CHART_DIR / "argocd" / "health.lua").read_text()


def test_the_application_trusts_the_field_manager_the_operator_writes_with() -> None:
    (app,) = [b for b in YAML_BLOCKS if b.get("kind") == "Application" and b["spec"].get("ignoreDifferences")]
    rules = {(r["group"], r["kind"]): r for r in app["spec"]["ignoreDifferences"]}
    assert set(rules) == {
        ("networking.istio.io", "VirtualService"),
        ("gateway.networking.k8s.io", "HTTPRoute"),
        ("apps", "Deployment"),
        ("serving.kserve.io", "InferenceService"),
    }
    # KServe's percent is a guarded JSON patch, not server-side apply: ignored by its path
    assert rules.pop(("serving.kserve.io", "InferenceService"))["jsonPointers"] == [PERCENT_PATH]
    assert all(rule["managedFieldsManagers"] == [FIELD_MANAGER] for rule in rules.values())
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_the_jq_variant_covers_the_weights_the_operator_writes() -> None:
    (variant,) = [b for b in YAML_BLOCKS if "ignoreDifferences" in b and "kind" not in b]
    rules = {(r["group"], r["kind"]): r for r in variant["ignoreDifferences"]}
    virtual_service = {
        "spec": {
            "http": [
                {
                    "name": "predict",
                    "route": [
                        {"destination": {"host": "churn-v2"}, "weight": 90},
                        {"destination": {"host": "churn-v3"}, "weight": 10},
                    ],
                    "mirror": {"host": "churn-v3"},
                    "mirrorPercentage": {"value": 100.0},
                }
            ]
        }
    }
    http_route = {"spec": {"rules": [{"backendRefs": [{"name": "churn-v2", "weight": 90}], "filters": []}]}}
    for (group, kind), sample in [
        (("networking.istio.io", "VirtualService"), virtual_service),
        (("gateway.networking.k8s.io", "HTTPRoute"), http_route),
    ]:
        paths = rules[(group, kind)]["jqPathExpressions"]
        assert all(jq_select(sample, path) for path in paths), f"{kind}: a path selects nothing"
    assert jq_select(virtual_service, ".spec.http[].route")[0][1]["weight"] == 10
    assert rules[("apps", "Deployment")]["jsonPointers"] == ["/spec/replicas"]


def test_operator_application_uses_only_chart_values_keys() -> None:
    (app,) = [b for b in YAML_BLOCKS if b.get("kind") == "Application" and b["spec"]["source"].get("helm")]
    assert app["spec"]["source"]["path"] == "charts/mlrollouts"
    chart().validate_schema(app["spec"]["source"]["helm"]["valuesObject"])

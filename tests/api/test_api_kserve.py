"""provider kserve: canary only, refused in both layers (CRD CEL and the operator) naming spec.strategy."""

from __future__ import annotations

import pytest
from api_support import load_example, python_problems

from mlrollouts.api.crd_validation import validate_manifest

BLOCKS = {
    "shadow": {"mirrorPercent": 100, "duration": "1h"},
    "abTest": {"maxDuration": "14d"},
    "bandit": {"minExploration": 0.05, "updateInterval": "5m", "minSamples": 500, "minDuration": "1h"},
}


def test_the_kserve_example_is_valid_in_both_layers() -> None:
    manifest = load_example("canary-kserve.yaml")
    assert validate_manifest(manifest) == [] and python_problems(manifest) == []


@pytest.mark.parametrize("strategy", list(BLOCKS))
def test_strategies_kserve_cannot_express_are_refused_naming_the_field(strategy: str) -> None:
    manifest = load_example("canary-kserve.yaml")
    del manifest["spec"]["canary"]
    manifest["spec"].update(strategy=strategy, **{strategy: BLOCKS[strategy]})
    for problems in (validate_manifest(manifest), python_problems(manifest)):
        (problem,) = [p for p in problems if "kserve" in p.message]
        assert problem.path == "spec.strategy"
        assert "use strategy canary" in problem.message and "canaryTrafficPercent" in problem.message


def test_the_kserve_block_goes_with_the_provider() -> None:
    missing = load_example("canary-kserve.yaml")
    del missing["spec"]["traffic"]["kserve"]
    extra = load_example("canary-istio.yaml")
    extra["spec"]["traffic"]["kserve"] = {"inferenceService": "churn"}
    for manifest, words in ((missing, "add it"), (extra, "remove it")):
        (problem,) = python_problems(manifest)
        assert problem.path == "spec.traffic.kserve" and words in problem.message
        assert [p.path for p in validate_manifest(manifest)] == ["spec.traffic.kserve"]

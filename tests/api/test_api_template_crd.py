"""The generated MetricTemplate and ClusterMetricTemplate CRDs: committed copies up to date, accepted by the
upstream CustomResourceDefinition schema, structural, and with the scope each kind needs."""

from __future__ import annotations

import kubernetes_validate
import pytest
from api_support import ROOT

from mlrollouts.api.crd import structural_problems
from mlrollouts.api.template_crd import TEMPLATE_CRD_FILES, generate_template_crd, render_template_crd_yaml
from mlrollouts.cli.main import main

KINDS = sorted(TEMPLATE_CRD_FILES)


@pytest.mark.parametrize("kind", KINDS)
def test_committed_template_crd_matches_the_models(kind: str) -> None:
    path = TEMPLATE_CRD_FILES[kind]
    assert (ROOT / path).read_text() == render_template_crd_yaml(kind), f"{path} is stale: run `make crds`"


@pytest.mark.parametrize("kind", KINDS)
def test_template_crd_is_a_valid_structural_crd(kind: str) -> None:
    crd = generate_template_crd(kind)
    kubernetes_validate.validate(crd, "1.32", strict=True)
    assert structural_problems(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]) == []


def test_scopes_and_names() -> None:
    namespaced, cluster = generate_template_crd("MetricTemplate"), generate_template_crd("ClusterMetricTemplate")
    assert (namespaced["spec"]["scope"], cluster["spec"]["scope"]) == ("Namespaced", "Cluster")
    assert namespaced["metadata"]["name"] == "metrictemplates.mlrollouts.dev"
    assert cluster["metadata"]["name"] == "clustermetrictemplates.mlrollouts.dev"


def test_crd_command_refuses_an_unknown_kind(capsys) -> None:
    assert main(["crd", "--kind", "AnalysisTemplate"]) != 0
    assert "--kind" in capsys.readouterr().err

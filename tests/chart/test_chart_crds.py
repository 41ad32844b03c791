"""The chart ships the generated ModelExperiment and metric template CRDs unchanged, plus kopf's peering CRDs."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from chart_support import CHART_DIR, REPO, chart

PROJECT_CRDS = (
    "modelexperiments.mlrollouts.dev.yaml",
    "metrictemplates.mlrollouts.dev.yaml",
    "clustermetrictemplates.mlrollouts.dev.yaml",
)


@pytest.mark.parametrize("name", PROJECT_CRDS)
def test_chart_crd_is_byte_identical_to_the_generated_one(name: str) -> None:
    # `make crds` writes crds/*.yaml and copies them into charts/mlrollouts/crds/.
    assert (CHART_DIR / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes()


def test_helm_installs_the_project_and_peering_crds() -> None:
    names = {crd["name"] for crd in chart().crds}
    assert names == {*(f"crds/{name}" for name in PROJECT_CRDS), "crds/kopf-peering.yaml"}


def test_peering_crds_are_valid_and_match_what_kopf_looks_for() -> None:
    crds = [doc for doc in yaml.safe_load_all((CHART_DIR / "crds" / "kopf-peering.yaml").read_text()) if doc]
    for crd in crds:
        kubernetes_validate.validate(crd, "1.30", strict=True)
    # kopf's selectors: kopf.dev/v1 clusterkopfpeerings (cluster-wide) and kopfpeerings (namespaced).
    found = {(c["spec"]["group"], c["spec"]["names"]["plural"], c["spec"]["scope"]) for c in crds}
    assert found == {("kopf.dev", "clusterkopfpeerings", "Cluster"), ("kopf.dev", "kopfpeerings", "Namespaced")}

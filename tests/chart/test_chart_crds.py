"""The chart ships the generated ModelExperiment CRD unchanged, plus kopf's peering CRDs."""

from __future__ import annotations

import kubernetes_validate
import yaml
from chart_support import CHART_DIR, REPO, chart

GENERATED_CRD = REPO / "crds" / "modelexperiments.mlrollouts.dev.yaml"
CHART_CRD = CHART_DIR / "crds" / "modelexperiments.mlrollouts.dev.yaml"


def test_chart_crd_is_byte_identical_to_the_generated_one() -> None:
    # After `make crds`, copy crds/modelexperiments.mlrollouts.dev.yaml into charts/mlrollouts/crds/.
    assert CHART_CRD.read_bytes() == GENERATED_CRD.read_bytes()


def test_helm_installs_the_experiment_and_peering_crds() -> None:
    names = {crd["name"] for crd in chart().crds}
    assert names == {"crds/modelexperiments.mlrollouts.dev.yaml", "crds/kopf-peering.yaml"}


def test_peering_crds_are_valid_and_match_what_kopf_looks_for() -> None:
    crds = [doc for doc in yaml.safe_load_all((CHART_DIR / "crds" / "kopf-peering.yaml").read_text()) if doc]
    for crd in crds:
        kubernetes_validate.validate(crd, "1.30", strict=True)
    # kopf's selectors: kopf.dev/v1 clusterkopfpeerings (cluster-wide) and kopfpeerings (namespaced).
    found = {(c["spec"]["group"], c["spec"]["names"]["plural"], c["spec"]["scope"]) for c in crds}
    assert found == {("kopf.dev", "clusterkopfpeerings", "Cluster"), ("kopf.dev", "kopfpeerings", "Namespaced")}

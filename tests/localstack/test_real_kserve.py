"""The KServe router against the real kube-apiserver with the upstream KServe CRD installed: the server
validates every InferenceService write against the CRD's structural schema, as in a KServe cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from realcluster_support import REAL_CLUSTER_MARKS, real_cluster

from mlrollouts.api.kserve import KServeTraffic
from mlrollouts.api.traffic import Variant
from mlrollouts.engine.types import Split
from mlrollouts.localstack.kubectl import Kubectl
from mlrollouts.localstack.realcluster import KSERVE_CRD, PROJECT_CRD, RealApiServer
from mlrollouts.routing.kserve import KServeRouter
from mlrollouts.routing.kube import KubeObjects

pytestmark = REAL_CLUSTER_MARKS
ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "churn", "namespace": "default"},
    "spec": {
        "predictor": {
            "canaryTrafficPercent": 0,
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://models/churn/v3"},
        }
    },
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RealApiServer, Kubectl]]:
    with real_cluster(tmp_path_factory.mktemp("real-kserve"), builtin_crds=(PROJECT_CRD, KSERVE_CRD)) as started:
        yield started


async def test_canary_steps_rollback_and_promotion_on_the_real_server(cluster: tuple[RealApiServer, Kubectl]) -> None:
    server, kubectl = cluster
    assert server.rejected_crds == []
    assert kubectl.run("get", "crd", "inferenceservices.serving.kserve.io").returncode == 0
    created = kubectl.run("apply", "-f", "-", input=json.dumps(ISVC))
    assert created.returncode == 0, created.stderr

    def percent() -> str:
        shown = kubectl.run("get", "isvc", "churn", "-o", "jsonpath={.spec.predictor.canaryTrafficPercent}")
        assert shown.returncode == 0, shown.stderr
        return shown.stdout

    objects = KubeObjects.from_kubeconfig(str(server.kubeconfig))
    variants = [Variant(name="churn-v2", service="churn-predictor-00002"), Variant(name="churn-v3", service="churn-v3")]
    router = KServeRouter(objects, "default", variants, KServeTraffic(inference_service="churn"))
    try:
        for step in (5, 20, 50):
            await router.apply(Split({"churn-v2": 100 - step, "churn-v3": step}), None)
            assert percent() == str(step)
        await router.restore()
        assert percent() == "0"
        promoted = await router.apply(Split({"churn-v2": 0, "churn-v3": 100}), None)
        assert promoted.changed and percent() == ""
        model = kubectl.run("get", "isvc", "churn", "-o", "jsonpath={.spec.predictor.model.storageUri}")
        assert model.stdout == "gs://models/churn/v3"
    finally:
        objects.close()

"""The local-stack fixtures, imported so that every test here can request them by name."""

import pathlib

import pytest

from mlrollouts.localstack.fixtures import k8s_api_client, kubectl, local_apiserver, prometheus_factory
from mlrollouts.localstack.server import LocalApiServer

__all__ = ["k8s_api_client", "kubectl", "local_apiserver", "prometheus_factory"]

DATA = pathlib.Path(__file__).parent / "data"
EXPERIMENT_CRD = DATA / "modelexperiments.crd.yaml"


@pytest.fixture
def apiserver(local_apiserver: LocalApiServer) -> LocalApiServer:
    """The local API server with this folder's ModelExperiment CRD installed."""
    local_apiserver.install_crd_files([EXPERIMENT_CRD])
    return local_apiserver

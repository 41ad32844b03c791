"""The local-stack fixtures, imported so that every test here can request them by name.

These are the emulator's own tests: `local_apiserver` is the emulator here whatever MLROLLOUTS_TEST_BACKEND
says (test_real_apiserver.py starts the real one itself)."""

import pathlib

import pytest

from mlrollouts.localstack.fixtures import emulated_apiserver, k8s_api_client, kubectl, prometheus_factory
from mlrollouts.localstack.server import LocalApiServer

__all__ = ["emulated_apiserver", "k8s_api_client", "kubectl", "prometheus_factory"]

DATA = pathlib.Path(__file__).parent / "data"
EXPERIMENT_CRD = DATA / "modelexperiments.crd.yaml"


@pytest.fixture
def local_apiserver(emulated_apiserver: LocalApiServer) -> LocalApiServer:
    return emulated_apiserver


@pytest.fixture
def apiserver(local_apiserver: LocalApiServer) -> LocalApiServer:
    """The local API server with this folder's ModelExperiment CRD installed."""
    local_apiserver.install_crd_files([EXPERIMENT_CRD])
    return local_apiserver

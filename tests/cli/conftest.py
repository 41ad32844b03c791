"""Local-stack fixtures for the CLI tests."""

from mlrollouts.localstack.fixtures import k8s_api_client, kubectl, local_apiserver

__all__ = ["k8s_api_client", "kubectl", "local_apiserver"]

"""The CLI's view of a cluster: any kubeconfig, clear errors when the experiment or the cluster is missing."""

from __future__ import annotations

from typing import Any

import click
import kubernetes
import urllib3

from mlrollouts import GROUP, PLURAL, VERSION


class ClusterError(click.ClickException):
    """Printed as one line with exit code 1: the command was right, the cluster said no."""

    exit_code = 1


class ExperimentNotFound(ClusterError):
    """The object (or its CRD) does not exist: waiting longer will not help."""


class Cluster:
    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        except (kubernetes.config.ConfigException, FileNotFoundError, TypeError) as error:
            where = kubeconfig or "$KUBECONFIG / ~/.kube/config"
            raise ClusterError(f"cannot load kubeconfig {where}: {error}") from None
        self.server = configuration.host
        self._context_namespace = _context_namespace(kubeconfig, context)
        configuration.retries = False
        self._api = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))

    def namespace(self, explicit: str | None) -> str:
        return explicit or self._context_namespace or "default"

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(
            lambda: self._api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=10
            ),
            what=f"ModelExperiment {namespace}/{name}",
        )

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            result = self._call(
                lambda: self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL, _request_timeout=10),
                what="ModelExperiments",
            )
        else:
            result = self._call(
                lambda: self._api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _request_timeout=10),
                what=f"ModelExperiments in {namespace}",
            )
        return list(result.get("items") or [])

    def annotate(self, namespace: str, name: str, key: str, value: str) -> dict[str, Any]:
        body = {"metadata": {"annotations": {key: value}}}
        return self._call(
            lambda: self._api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body, _request_timeout=10
            ),
            what=f"ModelExperiment {namespace}/{name}",
        )

    def _call(self, request: Any, what: str) -> Any:
        try:
            return request()
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                raise ExperimentNotFound(
                    f"{what} not found (is the ModelExperiment CRD installed, and the name and namespace right?)"
                ) from None
            raise ClusterError(f"{what}: the API server answered {error.status} {error.reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterError(f"cannot reach the Kubernetes API at {self.server}: {error}") from None


def _context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
    except (kubernetes.config.ConfigException, FileNotFoundError, TypeError):
        return None
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return ((chosen or {}).get("context") or {}).get("namespace")

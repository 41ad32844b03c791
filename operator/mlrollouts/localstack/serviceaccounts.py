"""ServiceAccounts on the real local control plane: an identity, its RBAC, and a kubeconfig with its token.

A process run out of cluster (the demo's gateway, the operator in the chart tests) authenticates as a pod would:
with a token the TokenRequest API issued for its ServiceAccount, so RBAC decides each request exactly as in a
cluster. The admin's client certificate would authorise anything.
"""

from __future__ import annotations

import base64
import pathlib
from collections.abc import Sequence
from typing import Any

import yaml

from mlrollouts.localstack.realcluster import RealApiServer


def _create(server: RealApiServer, path: str, body: dict[str, Any]) -> None:
    with server.client() as http:
        response = http.post(path, json=body)
    if response.status_code not in (201, 409):  # 409: already there, e.g. a second call
        raise RuntimeError(f"POST {path} failed with HTTP {response.status_code}: {response.text[:300]}")


def create_service_account(
    server: RealApiServer, namespace: str, name: str, rules: Sequence[dict[str, Any]] = ()
) -> None:
    """The ServiceAccount and, when `rules` are given, a Role and RoleBinding of the same name granting them."""
    _create(server, f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}})
    if not rules:
        return
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    _create(server, f"{rbac}/roles", {"metadata": {"name": name}, "rules": list(rules)})
    binding = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    _create(server, f"{rbac}/rolebindings", binding)


def token_kubeconfig(server: RealApiServer, namespace: str, name: str, path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig (mode 0600) holding a TokenRequest token of the ServiceAccount and the cluster's CA."""
    assert server.certs is not None, "the server is not running"
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    with server.client() as http:
        response = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", json=request)
    if response.status_code != 201:
        raise RuntimeError(
            f"TokenRequest for {namespace}/{name} failed with HTTP {response.status_code}: {response.text}"
        )
    ca = base64.b64encode(server.certs.ca_cert.read_bytes()).decode("ascii")
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server.url, "certificate-authority-data": ca}}],
        "users": [{"name": name, "user": {"token": response.json()["status"]["token"]}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name, "namespace": namespace}}],
        "current-context": name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    path.chmod(0o600)
    return path

"""The local stack for demos and tests: a Kubernetes API server, emulated or real, and a real Prometheus.

The real one (`realcluster.RealApiServer`) is etcd + kube-apiserver built by `make controlplane`; what
follows describes the emulator, the fallback where those binaries are not built.

The API server is an emulator (kmock-based, in memory, no auth, loopback only), not a cluster:
production runs on a real Kubernetes cluster. What it serves like a real API server: server-owned
metadata (uid, a global resourceVersion, generation on spec changes, creationTimestamp), generateName,
409 on stale resourceVersions, 422 on failed JSON-patch tests, watches resumed from a resourceVersion,
namespaces, CRD registration, server-side apply, dry runs, Tables with printer columns, status and
scale subresources, label/field selectors. What it does not: OpenAPI documents (use
`kubectl apply --validate=false`), protobuf bodies (415; `kubectl create namespace` sends protobuf,
apply a manifest instead), admission/validation against CRD schemas, RBAC, strategic merge on lists
(treated as a JSON merge patch), garbage collection by ownerReferences, controllers (nothing fills a
Deployment's status).

Access `LocalApiServer.emulator` for assertions (`emulator.objects[resource, namespace, name]` keeps the
last versions); mutate it only through `LocalApiServer.call(...)`, since the server's own loop owns it.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562): the emulator needs kmock, which only the `mlrollouts[local]` extra installs,
# and `mlrollouts demo --help` or the demo's scenario list must not need it.
_EXPORTS = {
    "ApiServerEmulator": "mlrollouts.localstack.emulator",
    "NO_VALIDATION": "mlrollouts.localstack.kubectl",
    "Kubectl": "mlrollouts.localstack.kubectl",
    "PrometheusError": "mlrollouts.localstack.prometheus",
    "PrometheusServer": "mlrollouts.localstack.prometheus",
    "free_port": "mlrollouts.localstack.prometheus",
    "PROJECT_CRD": "mlrollouts.localstack.server",
    "LocalApiServer": "mlrollouts.localstack.server",
    "kubeconfig_document": "mlrollouts.localstack.server",
    "load_crds": "mlrollouts.localstack.crdinstall",
    "RealApiServer": "mlrollouts.localstack.realcluster",
    "run_apiserver": "mlrollouts.localstack.server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

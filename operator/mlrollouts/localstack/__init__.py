"""The local stack for demos and tests: an emulated Kubernetes API server and a real Prometheus.

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

from mlrollouts.localstack.emulator import ApiServerEmulator
from mlrollouts.localstack.kubectl import NO_VALIDATION, Kubectl
from mlrollouts.localstack.prometheus import PrometheusError, PrometheusServer, free_port
from mlrollouts.localstack.server import PROJECT_CRD, LocalApiServer, kubeconfig_document, load_crds, run_apiserver

__all__ = [
    "NO_VALIDATION",
    "PROJECT_CRD",
    "ApiServerEmulator",
    "Kubectl",
    "LocalApiServer",
    "PrometheusError",
    "PrometheusServer",
    "free_port",
    "kubeconfig_document",
    "load_crds",
    "run_apiserver",
]

"""The admin kubeconfig of the real local control plane, certificates embedded so the file stands alone."""

from __future__ import annotations

import base64
from typing import Any

from mlrollouts.localstack.certs import ControlPlaneCerts

CONTEXT = "mlrollouts-local"


def _data(path: Any) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def admin_kubeconfig(url: str, certs: ControlPlaneCerts, context: str = CONTEXT) -> dict[str, Any]:
    """A kubeconfig for the admin identity (group system:masters), namespace `default` as current."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url, "certificate-authority-data": _data(certs.ca_cert)}}],
        "users": [
            {
                "name": context,
                "user": {
                    "client-certificate-data": _data(certs.admin_cert),
                    "client-key-data": _data(certs.admin_key),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}],
        "current-context": context,
        "preferences": {},
    }

"""Install CustomResourceDefinitions into a real API server and wait until they are served.

The real server runs the structural-schema checks and the CEL cost estimator on create: a CRD it refuses
is an error that quotes the server's reason, not a silent skip.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterable
from typing import Any

import httpx
import yaml

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
_REPO_CRDS = pathlib.Path(__file__).resolve().parents[3] / "crds"
# The project's own CRDs, as `make crds` writes them: ModelExperiment first, then the metric templates.
PROJECT_CRDS = (
    _REPO_CRDS / "modelexperiments.mlrollouts.dev.yaml",
    _REPO_CRDS / "metrictemplates.mlrollouts.dev.yaml",
    _REPO_CRDS / "clustermetrictemplates.mlrollouts.dev.yaml",
)
ESTABLISH_TIMEOUT_S = 60.0


class CrdRejected(RuntimeError):
    """The API server refused a CRD (HTTP status and its message)."""


def load_crds(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinition documents in a YAML file (other kinds are skipped)."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    return [
        doc
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]


def _apply(http: httpx.Client, crd: dict[str, Any]) -> None:
    name = crd["metadata"]["name"]
    response = http.post(CRDS, json=crd)
    if response.status_code == 409:  # already there (a second install): replace it
        current = http.get(f"{CRDS}/{name}").json()
        body = {**crd, "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        response = http.put(f"{CRDS}/{name}", json=body)
    if response.status_code >= 300:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise CrdRejected(f"CRD {name} rejected by the API server ({response.status_code}): {message}")


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def install_crds(
    http: httpx.Client, files: Iterable[pathlib.Path], rejected: list[str] | None = None
) -> list[dict[str, Any]]:
    """Create or replace every CRD in `files`; return them as served once all are Established.

    A refused CRD raises CrdRejected, or, given a `rejected` list, is added to it and the others go on."""
    names = []
    for path in files:
        for crd in load_crds(path):
            try:
                _apply(http, crd)
            except CrdRejected as error:
                if rejected is None:
                    raise
                rejected.append(str(error))
                continue
            names.append(crd["metadata"]["name"])
    deadline = time.monotonic() + ESTABLISH_TIMEOUT_S
    served: list[dict[str, Any]] = []
    for name in names:
        while True:
            crd = http.get(f"{CRDS}/{name}").json()
            if _established(crd):
                served.append(crd)
                break
            if time.monotonic() > deadline:
                raise CrdRejected(f"CRD {name} not Established after {ESTABLISH_TIMEOUT_S:.0f} s: {crd.get('status')}")
            time.sleep(0.1)
    return served

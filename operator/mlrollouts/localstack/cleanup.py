"""Empty a real API server between tests without restarting it (a start costs seconds, a reset a fraction),
and compact its etcd (the history a watch resumes from).

Deletes every object of every custom resource and of the core kinds tests create, in every namespace.
Finalizers are removed first: the operator that set them may be gone, and nothing else would remove them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

CORE = ("/api/v1", ("secrets", "configmaps", "services", "pods", "events"))
APPS = ("/apis/apps/v1", ("deployments",))
COORDINATION = ("/apis/coordination.k8s.io/v1", ("leases",))
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


RETRIES = 20


def _call(http: httpx.Client, method: str, url: str, **options: Any) -> httpx.Response:
    """One request, repeated while the server answers 429 (priority and fairness sheds load on a busy machine)."""
    for _ in range(RETRIES):
        response = http.request(method, url, **options)
        if response.status_code != 429:
            return response
        time.sleep(min(float(response.headers.get("Retry-After") or 1), 2.0))
    return response


def _custom_resources(http: httpx.Client) -> Iterator[tuple[str, str, bool]]:
    """(group/version prefix, plural, namespaced) of every served CRD version."""
    crds = _call(http, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions").json().get("items", [])
    for crd in crds:
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                yield f"/apis/{spec['group']}/{version['name']}", spec["names"]["plural"], spec["scope"] == "Namespaced"
                break


def _delete_all(http: httpx.Client, collection: str) -> None:
    """Drop the finalizers of the objects in `collection` (a namespaced or cluster URL), then delete them."""
    listing = _call(http, "GET", collection)
    if listing.status_code == 404:
        return
    listing.raise_for_status()
    for item in listing.json().get("items", []):
        name = item["metadata"]["name"]
        if item["metadata"].get("finalizers"):
            _call(
                http,
                "PATCH",
                f"{collection}/{name}",
                json={"metadata": {"finalizers": None}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        if not item["metadata"].get("deletionTimestamp"):
            _call(http, "DELETE", f"{collection}/{name}", params={"gracePeriodSeconds": 0})


def reset_objects(http: httpx.Client) -> None:
    """Delete the objects tests create in every non-system namespace, and every cluster-scoped custom object."""
    namespaces = [
        n["metadata"]["name"]
        for n in _call(http, "GET", "/api/v1/namespaces").json().get("items", [])
        if n["metadata"]["name"] not in SYSTEM_NAMESPACES
    ]
    kinds: list[tuple[str, str, bool]] = [
        (prefix, plural, True) for prefix, plurals in (CORE, APPS, COORDINATION) for plural in plurals
    ]
    kinds += list(_custom_resources(http))
    for prefix, plural, namespaced in kinds:
        if not namespaced:
            _delete_all(http, f"{prefix}/{plural}")
            continue
        for namespace in namespaces:
            _delete_all(http, f"{prefix}/namespaces/{namespace}/{plural}")


def compact_etcd(etcd_url: str, deadline: float) -> bool:
    """Compact etcd up to its current revision through its JSON gateway; False if it never answered."""
    with httpx.Client(base_url=etcd_url, timeout=10.0) as http:
        while time.monotonic() < deadline:
            try:
                revision = http.post("/v3/kv/range", json={"key": "AA=="}).json()["header"]["revision"]
                http.post("/v3/kv/compaction", json={"revision": revision, "physical": True}).raise_for_status()
                return True
            except (httpx.HTTPError, KeyError, ValueError):
                time.sleep(0.2)
    return False

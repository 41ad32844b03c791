"""Reading a kube-apiserver CPU profile for benchmarks/apicost.py: `go tool pprof -top`, and the share of the
profile under each part of the server (cumulative: a sample under two parts counts in both)."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

SHARES = {
    "managedFields (fieldmanager, structured-merge-diff)": r"fieldmanager|structured-merge-diff",
    "schema validation (OpenAPI, ratcheting)": r"kube-openapi/pkg/validation|apiserver/validation\.|ratcheting",
    "CEL rules (x-kubernetes-validations)": r"apiserver/schema/cel|cel-go",
    "JSON decode/encode": r"encoding/json|sigs\.k8s\.io/json|json-iterator|unstructured.*(Unmarshal|Marshal)",
    "etcd client (gRPC)": r"go\.etcd\.io/etcd/client|google\.golang\.org/grpc",
    "watch: etcd event decode": r"etcd3\.\(\*watchChan\)",
    "watch cache (cacher, fan-out)": r"cacher\.\(\*(Cacher|watchCache|cacheWatcher)\)|cachingObject",
    "request: patch apply (decode, patch, encode)": r"\(\*patcher\)\.applyPatch",
    "request: validation (schema + CEL)": r"statusStrategy\)?\.ValidateUpdate",
    "request: response encode": r"transformResponseObject|WriteObjectNegotiated",
    "admission": r"apiserver/pkg/admission",
    "authn/authz": r"apiserver/pkg/(authentication|authorization)|filters\.With(Authentication|Authorization)",
    "TLS, HTTP/2": r"crypto/tls|golang\.org/x/net/http2|net/http\.\(\*conn\)",
    "garbage collection": r"runtime\.gcBgMarkWorker|runtime\.gcDrain",
    "metrics, tracing, audit": r"prometheus/client_golang|otel|audit",
}
TOTAL = re.compile(r"Showing nodes accounting for ([^,]+), ([0-9.]+)% of (\S+) total")


def _go() -> str:
    return shutil.which("go") or "/usr/local/go/bin/go"


def _pprof(*args: str) -> str:
    command = [_go(), "tool", "pprof", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300).stdout


def share(raw: pathlib.Path, pattern: str) -> float:
    """Percent of the profile's samples with a frame matching `pattern` (cumulative)."""
    found = TOTAL.search(_pprof("-top", "-nodecount=1000000", f"-focus={pattern}", str(raw)))
    return float(found.group(2)) if found else 0.0


def shares_table(raw: pathlib.Path) -> str:
    return "\n".join(f"  {share(raw, pattern):5.1f} %  {name}" for name, pattern in SHARES.items())


def read(raw: pathlib.Path) -> str:
    """Shares, then the top functions by flat and by cumulative time."""
    flat = _pprof("-top", "-nodecount=45", str(raw))
    cumulative = _pprof("-top", "-cum", "-nodecount=80", str(raw))
    return f"shares (cumulative):\n{shares_table(raw)}\n\n--- flat ---\n{flat}\n--- cumulative ---\n{cumulative}"

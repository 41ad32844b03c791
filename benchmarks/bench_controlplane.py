"""Start-up and shutdown of the real local control plane (etcd + kube-apiserver from `make controlplane`).

Three fresh starts in a row: seconds until /readyz is ok, until the built-in CRDs (ModelExperiment, Istio,
Gateway API, Prometheus Operator) are Established, and for stop() to end both processes and remove the
data. Plus `make controlplane` when the binaries are already built. Skipped where they are not built.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import BenchTable, Progress
from mlrollouts.localstack import binaries
from mlrollouts.localstack.realcluster import REPO_ROOT, RealApiServer

RUNS = 3


def run(progress: Progress) -> BenchTable:
    columns = ("what", "run", "seconds")
    if not binaries.available():
        return BenchTable("Real control plane start-up", columns, [], (binaries.unavailable_reason(),))
    rows: list[tuple[str, str, str]] = []
    rejected: list[str] = []
    for index in range(1, RUNS + 1):
        progress(f"start {index} of {RUNS}")
        with tempfile.TemporaryDirectory() as folder:
            server = RealApiServer(kubeconfig_path=Path(folder) / "kubeconfig").start()
            began = time.monotonic()
            server.stop()
            stopped = time.monotonic() - began
        rejected = server.rejected_crds
        rows.append(("/readyz ok", str(index), f"{server.ready_seconds:.1f}"))
        rows.append(("CRDs Established", str(index), f"{server.startup_seconds:.1f}"))
        rows.append(("stop (both processes ended, data removed)", str(index), f"{stopped:.1f}"))
    began = time.monotonic()
    subprocess.run(["bash", str(REPO_ROOT / "controlplane" / "build.sh")], check=True, capture_output=True)
    rows.append(("make controlplane, already built", "1", f"{time.monotonic() - began:.2f}"))
    notes = [
        "Start-up includes generating the CA, serving, admin and service-account keys (EC P-256).",
        "`make controlplane` on a fresh machine (empty Go module and build caches: 715 MB of modules, 2.9 GB of"
        " build cache) took 916 s on this 2-CPU machine shared with other work; 773 s with the modules already"
        " downloaded; 20 s with a warm Go build cache and a new cache key (only the links).",
    ]
    notes += [f"Refused by the server: {problem.splitlines()[0][:200]}" for problem in rejected]
    return BenchTable("Real control plane start-up (etcd + kube-apiserver on loopback)", columns, rows, notes)

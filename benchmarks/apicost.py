"""API server + etcd CPU per ModelExperiment status write, by write shape (a script, not part of `make bench`).

    python -m benchmarks.apicost [--experiments 100] [--writes 600] [--rounds 3] [--shapes operator,noop,...]
        [--profile DIR] [--profile-seconds 30]

Why: at 40 ticks/s the capacity benchmark's kube-apiserver + etcd used a whole core (~25 ms per tick, one status
write each), about 3x the operator. This measures that cost alone and what each lever does to it.

1. Realistic statuses: the real operator (`mlrollouts run --standalone`) ticks N of the capacity benchmark's
   A/B tests every 2 s on a real kube-apiserver + etcd (profiling on) and a real Prometheus, until each was
   analysed a few times; two snapshots a tick apart say which scalars a tick changes; then the operator stops.
2. Writes: this process writes the statuses as the operator's tick does, 4 threads over the N objects, each
   write changing what a real tick changed (lastAnalysisAt, counts, statistics: apicost_shapes.advance), with
   a watch open on the ModelExperiments as kopf's is. Shapes take turns (interleaved rounds); per batch, the
   CPU of kube-apiserver and etcd from /proc over the batch divided by the writes, with the load average.
   `noop` writes the status unchanged; `nowatch` is `operator` with no watch open.
3. `--profile DIR`: a CPU profile of kube-apiserver (/debug/pprof/profile) while each profiled shape writes,
   kept with `go tool pprof -top` and the share of each part of the server (apicost_pprof.SHARES).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import kubernetes

from benchmarks import apicost_pprof
from benchmarks.apicost_shapes import SHAPES, Path, Request, advance, changed_paths, operator
from benchmarks.bench_operator import LOAD, VARIANTS, Config, cpu_seconds, create_all, operator_process
from benchmarks.harness import scraped_exporter, stopped_by_signals
from mlrollouts.localstack.realcluster import RealApiServer
from mlrollouts.localstack.replicas import GROUP, PLURAL, VERSION, survey_items

COLLECTION = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
THREADS = 4


@dataclass
class Tracked:
    """One experiment as this process last wrote it."""

    name: str
    status: dict[str, Any]
    version: str
    paths: list[Path]


@dataclass
class Batch:
    shape: str
    writes: int = 0
    failed: dict[int, int] = field(default_factory=dict)


def snapshot(api: kubernetes.client.ApiClient) -> dict[str, dict[str, Any]]:
    return {item["metadata"]["name"]: item for item in survey_items(kubernetes.client.CustomObjectsApi(api))}


def realistic(server: RealApiServer, prometheus: str, args: argparse.Namespace, folder: pathlib.Path) -> list[Tracked]:
    """The operator's statuses after a few analyses each, and the scalars one tick changed (see module doc)."""
    kubeconfig = folder / "kubeconfig"
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    try:
        create_all(api, Config(args.experiments, "gateway", 2, 0, 0), prometheus)
        with operator_process(kubeconfig, folder / "operator.log"):
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                items = snapshot(api)
                looks = [_looks(item) for item in items.values()]
                if min(looks, default=0) >= 3:
                    break
                time.sleep(2)
            first = snapshot(api)
            time.sleep(5)
            second = snapshot(api)
        latest = snapshot(api)
    finally:
        api.close()
    union: set[Path] = set()
    per: dict[str, list[Path]] = {}
    for name, item in second.items():
        before, after = (first[name].get("status") or {}), (item.get("status") or {})
        if before.get("lastAnalysisAt") != after.get("lastAnalysisAt"):
            per[name] = changed_paths(before, after)
            union.update(per[name])
    tracked = []
    for name, item in sorted(latest.items()):
        paths = per.get(name) or sorted(union, key=str)
        tracked.append(Tracked(name, item.get("status") or {}, item["metadata"]["resourceVersion"], paths))
    sizes = [len(json.dumps(t.status)) for t in tracked]
    parts = {key: len(json.dumps(value)) for key, value in tracked[0].status.items()}
    item = latest[tracked[0].name]
    metadata = item["metadata"]
    parts["(object) spec"] = len(json.dumps(item["spec"]))
    parts["(object) metadata.managedFields"] = len(json.dumps(metadata.get("managedFields")))
    parts["(object) metadata.annotations"] = len(json.dumps(metadata.get("annotations")))
    if args.dump:
        pathlib.Path(args.dump).write_text(json.dumps(item, indent=1))
    ranked = sorted(parts.items(), key=lambda kv: -kv[1])
    print("status parts (bytes of JSON):", ", ".join(f"{k} {v}" for k, v in ranked))
    shown = ", ".join(".".join(map(str, p)) for p in tracked[0].paths[:12])
    print(
        f"statuses: {len(tracked)}, {sum(sizes) / len(sizes) / 1024:.1f} KB each (JSON), object "
        f"{len(json.dumps(latest[tracked[0].name])) / 1024:.1f} KB; a tick changed {len(tracked[0].paths)} scalars: "
        f"{shown}{' ...' if len(tracked[0].paths) > 12 else ''}",
        flush=True,
    )
    return tracked


def _looks(item: dict[str, Any]) -> int:
    evidence = ((item.get("status") or {}).get("evidence") or {}).values()
    return min((e.get("looks") or 0 for e in evidence), default=0)


@contextlib.contextmanager
def watching(server: RealApiServer) -> Iterator[None]:
    """A watch on the ModelExperiments read to the end of each event, as kopf's (its CPU is this process's)."""
    stop = threading.Event()

    def run() -> None:
        with contextlib.suppress(httpx.HTTPError), server.client(timeout=None) as http:  # type: ignore[arg-type]
            params = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "3600"}
            with http.stream("GET", COLLECTION, params=params) as response:
                for _line in response.iter_lines():
                    if stop.is_set():
                        return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.5)
    try:
        yield
    finally:
        stop.set()  # the next event (a bookmark at the latest) ends the thread; a daemon, it is not waited for


def send(http: httpx.Client, request: Request) -> httpx.Response:
    headers = {"Content-Type": request.content_type, "Accept": request.accept}
    return http.request(request.method, request.path, content=request.body, headers=headers, params=request.params)


def write_batch(
    server: RealApiServer, tracked: list[Tracked], shape: str, writes: int, until: threading.Event | None = None
) -> Batch:
    """`writes` status writes of `shape` by THREADS threads over `tracked` (or until `until` is set)."""
    batch = Batch(shape)
    lock = threading.Lock()
    build = SHAPES.get(shape, operator)
    unchanged = shape == "noop"

    def worker(mine: list[Tracked]) -> None:
        with server.client(timeout=30.0) as http:
            index = 0
            while True:
                with lock:
                    if (until is None and batch.writes >= writes) or (until is not None and until.is_set()):
                        return
                    batch.writes += 1
                item = mine[index % len(mine)]
                index += 1
                new = item.status if unchanged else advance(item.status, item.paths, datetime.now(UTC))
                response = send(http, build(item.name, item.status, new, item.version))
                if response.status_code != 200:
                    with lock:
                        batch.failed[response.status_code] = batch.failed.get(response.status_code, 0) + 1
                    continue
                item.status, item.version = new, response.json()["metadata"]["resourceVersion"]

    threads = [threading.Thread(target=worker, args=(tracked[i::THREADS],)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return batch


def measure(server: RealApiServer, tracked: list[Tracked], shape: str, writes: int) -> dict[str, float]:
    pids = {name: process.pid for name, process in server.processes.items()}
    load0, cpu0, t0 = os.getloadavg()[0], {n: cpu_seconds(p) for n, p in pids.items()}, time.monotonic()
    if shape == "nowatch":
        batch = write_batch(server, tracked, shape, writes)
    else:
        with watching(server):
            cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
            t0 = time.monotonic()
            batch = write_batch(server, tracked, shape, writes)
    elapsed = time.monotonic() - t0
    cpu = {n: cpu_seconds(p) - cpu0[n] for n, p in pids.items()}
    n = max(batch.writes, 1)
    return {
        "api_ms": cpu["kube-apiserver"] * 1000 / n,
        "etcd_ms": cpu["etcd"] * 1000 / n,
        "writes_s": batch.writes / elapsed,
        "load0": load0,
        "load1": os.getloadavg()[0],
        "failed": sum(batch.failed.values()),
    }


def profile(server: RealApiServer, tracked: list[Tracked], shape: str, seconds: int, out: pathlib.Path) -> None:
    """kube-apiserver's CPU profile while `shape` writes; the raw profile and its readings go to `out`."""
    done = threading.Event()
    data: dict[str, bytes] = {}

    def fetch() -> None:
        try:
            with server.client(timeout=seconds + 60.0) as http:
                data["profile"] = http.get("/debug/pprof/profile", params={"seconds": str(seconds)}).content
        finally:
            done.set()

    thread = threading.Thread(target=fetch)
    load0 = os.getloadavg()[0]
    with watching(server) if shape != "nowatch" else contextlib.nullcontext():
        thread.start()
        batch = write_batch(server, tracked, shape, 0, until=done)
    thread.join()
    raw = out / f"{shape}.pprof"
    raw.write_bytes(data.get("profile", b""))
    report = apicost_pprof.read(raw)
    header = f"{shape}: {batch.writes} writes in {seconds} s, load {load0:.1f}/{os.getloadavg()[0]:.1f}"
    (out / f"{shape}.txt").write_text(f"{header}\n\n{report}\n")
    print(header, flush=True)
    print(apicost_pprof.shares_table(raw), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", type=int, default=100)
    parser.add_argument("--writes", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default="operator,noop,nowatch,full-response,merge-changed,apply")
    parser.add_argument("--profile", default="", help="folder for kube-apiserver CPU profiles (none when empty)")
    parser.add_argument("--profile-shapes", default="operator")
    parser.add_argument("--dump", default="", help="file to write one experiment as the operator left it")
    parser.add_argument("--profile-seconds", type=int, default=30)
    args = parser.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    with stopped_by_signals(), tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        server = RealApiServer(kubeconfig_path=folder / "kubeconfig", extra_args=["--profiling=true"])
        with scraped_exporter(VARIANTS, seed=5, **LOAD) as (_, prometheus), server:
            tracked = realistic(server, prometheus.address, args, folder)
            write_batch(server, tracked, "operator", args.experiments)  # warm-up: connections, caches
            results: dict[str, list[dict[str, float]]] = {shape: [] for shape in shapes}
            for round_ in range(args.rounds):
                for shape in shapes:
                    row = measure(server, tracked, shape, args.writes)
                    results[shape].append(row)
                    print(
                        f"{shape} {round_ + 1}: API server {row['api_ms']:.2f} + etcd {row['etcd_ms']:.2f} ms/write, "
                        f"{row['writes_s']:.0f} writes/s, failed {row['failed']:.0f}, "
                        f"load {row['load0']:.1f}/{row['load1']:.1f}",
                        flush=True,
                    )
            for shape, rows in results.items():
                api = [r["api_ms"] for r in rows]
                etcd = [r["etcd_ms"] for r in rows]
                print(
                    f"{shape}: API server {' / '.join(f'{a:.2f}' for a in api)} (mean {sum(api) / len(api):.2f}), "
                    f"etcd mean {sum(etcd) / len(etcd):.2f} ms/write",
                    flush=True,
                )
            if args.profile:
                out = pathlib.Path(args.profile)
                out.mkdir(parents=True, exist_ok=True)
                for shape in [s for s in args.profile_shapes.split(",") if s]:
                    profile(server, tracked, shape, args.profile_seconds, out)


if __name__ == "__main__":
    main()

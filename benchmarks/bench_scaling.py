"""Scaling: experiments × interval → ticks/s achieved vs ideal, CPU ms/tick, RSS per 1,000 experiments, p95.

On the real kube-apiserver + etcd (`make controlplane`) when its binaries exist, so that the emulator's CPU
does not show in the figures (the emulator otherwise, said so in the table). One operator process (one
replica: active-active sharding is another change), a real Prometheus scraping the real exporter. Each
configuration gets a fresh API server and operator; RSS per 1,000 experiments is the operator's RSS growth
over its idle RSS. Windows are short (a shared 2-core machine): a few minutes in all.
"""

from __future__ import annotations

import pathlib
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import kubernetes

from benchmarks.bench_operator import (
    LOAD,
    VARIANTS,
    Config,
    create_all,
    measure_window,
    milliseconds,
    operator_process,
    rss_mb,
    survey,
    warm_up,
)
from benchmarks.harness import BenchTable, Progress, scraped_exporter
from mlrollouts.localstack import binaries
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.realcluster import RealApiServer
from mlrollouts.localstack.server import run_apiserver


@dataclass(frozen=True)
class Point:
    experiments: int
    interval_s: int
    window_s: float


POINTS = (Point(100, 5, 20), Point(500, 5, 20), Point(1000, 5, 25), Point(1000, 10, 30))
PROJECTED = 10_000


@contextmanager
def api_server(folder: pathlib.Path) -> Iterator[str]:
    """The real control plane when built, else the emulator; yields which one."""
    if binaries.available():
        with RealApiServer(kubeconfig_path=folder / "kubeconfig"):
            yield "real kube-apiserver + etcd"
    else:
        server = run_apiserver(0, folder / "kubeconfig")
        try:
            yield "emulated (binaries not built: its CPU is in this process, not the operator's)"
        finally:
            server.stop()


def measure(point: Point, prometheus: PrometheusServer, tmp: pathlib.Path, progress: Progress) -> dict[str, str]:
    folder = tmp / f"{point.experiments}-{point.interval_s}"
    folder.mkdir()
    config = Config(point.experiments, "gateway", point.interval_s, point.window_s, 4 * point.interval_s + 30)
    with api_server(folder) as backend:
        api = kubernetes.config.new_client_from_config(config_file=str(folder / "kubeconfig"))
        try:
            with operator_process(folder / "kubeconfig", folder / "operator.log") as (child, port):
                time.sleep(2)
                idle_rss = rss_mb(child.pid)
                started = time.monotonic()
                create_all(api, config, prometheus.address)
                progress(f"{point.experiments} experiments created in {time.monotonic() - started:.1f}s ({backend})")
                warm_up(port, point.experiments, started + config.max_warmup_s)
                window = measure_window(child.pid, port, prometheus, point.window_s)
                rss = rss_mb(child.pid)
                tally, ages = survey(api)
        finally:
            api.close()
    elapsed, ticks, cpu = window.elapsed_s, window.ticks, window.operator_cpu_s
    per_tick = max(ticks.count, 1)
    ideal = point.experiments / point.interval_s
    return {
        "experiments": str(point.experiments),
        "interval s": str(point.interval_s),
        "API server": backend.split(" (")[0],
        "window s": f"{elapsed:.0f}",
        "ticks/s": f"{ticks.count / elapsed:.1f}",
        "ideal ticks/s": f"{ideal:.0f}",
        "achieved / ideal": f"{ticks.count / elapsed / ideal:.2f}",
        "CPU ms/tick": f"{cpu * 1000 / per_tick:.2f}",
        "CPU % of a core": f"{cpu / elapsed * 100:.0f}",
        "RSS MB": f"{rss:.0f}",
        "RSS MB per 1,000 experiments": f"{(rss - idle_rss) * 1000 / point.experiments:.0f}",
        "reconcile p95 ms": milliseconds(ticks.quantile(0.95), ticks.buckets),
        "queries/tick": f"{window.queries / per_tick:.1f}",
        "since last analysis s, median / max": f"{ages[len(ages) // 2]:.1f} / {ages[-1]:.1f}",
        "phases": ", ".join(f"{phase} {count}" for phase, count in sorted(tally.items())),
    }


def run(progress: Progress) -> BenchTable:
    started = time.monotonic()
    rows: list[dict[str, str]] = []
    with scraped_exporter(VARIANTS, seed=3, **LOAD) as (_, prometheus), tempfile.TemporaryDirectory() as tmp:
        for point in POINTS:
            progress(f"{point.experiments} experiments at {point.interval_s}s")
            rows.append(measure(point, prometheus, pathlib.Path(tmp), progress))
            progress(f"done: {rows[-1]}")
    return BenchTable(
        title="Scaling of one operator replica (real API server, real Prometheus)",
        columns=list(rows[0]),
        rows=[list(row.values()) for row in rows],
        notes=notes(rows, time.monotonic() - started),
    )


def notes(rows: list[dict[str, str]], elapsed_s: float) -> tuple[str, ...]:
    saturated = [r for r in rows if float(r["achieved / ideal"]) >= 0.9]
    reference = max(saturated or rows, key=lambda r: int(r["experiments"]))
    cpu_ms = float(reference["CPU ms/tick"])
    rss_k = max(float(r["RSS MB per 1,000 experiments"]) for r in rows)
    per_core = 1000 / cpu_ms
    interval_one_core = PROJECTED / per_core
    return (
        "Each experiment: an A/B test of two equal models that stays Progressing (3 grouped Prometheus queries, "
        "a GET and a status PATCH per tick); ideal ticks/s = experiments / interval.",
        "CPU from /proc/PID/stat of the operator alone; RSS per 1,000 experiments = (RSS with the experiments "
        "- RSS idle) × 1,000 / experiments.",
        f"Projection for {PROJECTED:,} experiments, from the {reference['experiments']}-experiment row "
        f"({cpu_ms:g} ms of CPU per tick): one core gives 1000 / {cpu_ms:g} = {per_core:.0f} ticks/s, so "
        f"{PROJECTED:,} experiments need an interval of at least {PROJECTED:,} / {per_core:.0f} = "
        f"{interval_one_core:.0f} s in one replica at 100 % of a core; at a 60 s interval they need "
        f"{PROJECTED:,} / 60 = {PROJECTED / 60:.0f} ticks/s = {PROJECTED / 60 * cpu_ms / 1000:.2f} cores, i.e. "
        f"one replica at {PROJECTED / 60 * cpu_ms / 10:.0f} % of a core (keep it below ~70 %: "
        f"{max(1, round(PROJECTED / 60 * cpu_ms / 1000 / 0.7 + 0.49))} replica(s) once sharded), if nothing but "
        "CPU limited a replica. Memory: "
        f"{PROJECTED // 1000} × {rss_k:.0f} MB = {PROJECTED / 1000 * rss_k / 1024:.1f} GB on top of the idle "
        "process (the largest per-1,000 figure measured).",
        "Where achieved / ideal is far below 1 while the operator uses well under a core, CPU is not the limit: "
        "each tick's GET and status PATCH are blocking kubernetes-client calls on the default thread pool "
        "(a handful of workers) to an API server whose etcd writes every status on the same loaded disk and CPUs; "
        "reconciles then queue (p95 > 10 s), ticks in flight across the window's edges raise queries/tick above 3, "
        "and the CPU per tick rises as kopf's fixed per-event and per-daemon work is divided by fewer ticks. "
        "An async Kubernetes transport (as the Prometheus queries now use) is the next step.",
        f"Short windows on a shared 2-core machine (load from other work included): {elapsed_s:.0f}s in all; "
        "achieved / ideal below 1 at high counts is the machine as much as the operator.",
    )

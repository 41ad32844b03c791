"""Scaling: experiments × replicas × interval → ticks/s achieved vs ideal, CPU ms/tick and RSS per replica,
reconcile p95, the longest time since an experiment's last analysis; and a projection for 10,000 experiments.

Replicas are real `mlrollouts run --shards 16` processes (the chart's sharding flags; one replica holds every
shard) against the real kube-apiserver + etcd when built (`make controlplane`, so that the API's CPU is apart from
the operators'; the emulator otherwise, said so in the table), with a real Prometheus scraping the real exporter.
Each (experiments, interval) group gets a fresh API server: one replica starts first (its idle RSS is the
baseline), the experiments are created, and each replica count in turn gets fresh processes, a warm-up and a short
measured window (a shared 2-core machine). Everything is read from outside the operator: /proc, its /metrics,
status.lastAnalysisAt.
"""

from __future__ import annotations

import math
import pathlib
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import kubernetes

from benchmarks.bench_operator import LOAD, VARIANTS, Histogram, cpu_seconds, milliseconds, reconcile_histogram, rss_mb
from benchmarks.harness import ApiBackend, BenchTable, Progress, api_server, load_average, scraped_exporter
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.replicas import (
    GROUP,
    PLURAL,
    VERSION,
    Replica,
    experiment_manifest,
    held_shards,
    survey_items,
    total,
    wait_until,
)

SHARDS = 16
PROJECTED = 10_000
HEADROOM = 0.7  # a replica planned at <= 70 % of its core: room for bursts (creation, takeovers, GC)


@dataclass(frozen=True)
class Group:
    experiments: int
    interval_s: int
    replicas: tuple[int, ...] = (1, 2, 3)
    window_s: float = 20.0


GROUPS = (Group(300, 10), Group(300, 5), Group(1000, 10))


@dataclass(frozen=True)
class Row:
    experiments: int
    interval_s: int
    replicas: int
    backend: str
    elapsed_s: float
    ticks: list[float]
    cpu_s: list[float]
    rss_mb: list[float]
    idle_rss_mb: float
    owned: list[float]
    reconcile: Histogram
    worst_age_s: float
    never_analysed: int
    api_cpu_s: float
    load: str

    @property
    def ticks_per_s(self) -> float:
        return sum(self.ticks) / self.elapsed_s

    @property
    def ideal(self) -> float:
        return self.experiments / self.interval_s

    @property
    def cpu_ms_per_tick(self) -> float:
        """All replicas' CPU over all their ticks."""
        return sum(self.cpu_s) * 1000 / max(sum(self.ticks), 1)

    @property
    def rss_per_1000(self) -> float:
        """RSS growth over idle per 1,000 experiments, all replicas together."""
        return (sum(self.rss_mb) - self.idle_rss_mb * self.replicas) * 1000 / self.experiments

    def cells(self) -> dict[str, str]:
        each = lambda values: " / ".join(values)  # noqa: E731
        return {
            "experiments": str(self.experiments),
            "interval s": str(self.interval_s),
            "replicas": str(self.replicas),
            "ticks/s": f"{self.ticks_per_s:.1f}",
            "ideal ticks/s": f"{self.ideal:.0f}",
            "achieved / ideal": f"{self.ticks_per_s / self.ideal:.2f}",
            "ticks/s per replica": each(f"{t / self.elapsed_s:.1f}" for t in self.ticks),
            "CPU ms/tick per replica": each(
                f"{c * 1000 / max(t, 1):.1f}" for c, t in zip(self.cpu_s, self.ticks, strict=True)
            ),
            "CPU ms/tick all": f"{self.cpu_ms_per_tick:.2f}",
            "CPU % of a core per replica": each(f"{c / self.elapsed_s * 100:.0f}" for c in self.cpu_s),
            "RSS MB per replica": each(f"{r:.0f}" for r in self.rss_mb),
            "RSS MB per 1,000 experiments": f"{self.rss_per_1000:.0f}",
            "reconcile p95 ms": milliseconds(self.reconcile.quantile(0.95), self.reconcile.buckets),
            "max since last analysis s": "never analysed: " + str(self.never_analysed)
            if self.never_analysed
            else f"{self.worst_age_s:.1f}",
            "API server + etcd CPU ms/tick": f"{self.api_cpu_s * 1000 / max(sum(self.ticks), 1):.2f}"
            if self.api_cpu_s >= 0
            else "in-process",
            "load avg 1 min": self.load,
        }


def histogram_sum(histograms: list[Histogram]) -> Histogram:
    buckets: dict[float, float] = {}
    for histogram in histograms:
        for le, count in histogram.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + count
    return Histogram(sum(h.count for h in histograms), sum(h.total for h in histograms), buckets)


def api_cpu(backend: ApiBackend) -> float:
    """kube-apiserver + etcd CPU seconds so far; -1 for the emulator (its CPU is this process's)."""
    return sum(cpu_seconds(pid) for pid in backend.pids) if backend.pids else -1.0


def oldest_analysis(objects: kubernetes.client.CustomObjectsApi) -> tuple[float, int]:
    """Seconds since the least recently analysed experiment's last analysis, and how many were never analysed."""
    now, worst, never = datetime.now(UTC), 0.0, 0
    for item in survey_items(objects):
        stamp = (item.get("status") or {}).get("lastAnalysisAt")
        if stamp is None:
            never += 1
        else:
            worst = max(worst, (now - datetime.fromisoformat(stamp)).total_seconds())
    return worst, never


@contextmanager
def replicas_running(count: int, backend: ApiBackend, folder: pathlib.Path) -> Iterator[list[Replica]]:
    """`count` fresh replicas, each up (metrics served) before it is returned; SIGTERM (Leases freed) at the end."""
    replicas = [
        Replica(f"replica-{i}", backend.kubeconfig, folder / f"r{count}-replica-{i}.log", SHARDS).start()
        for i in range(count)
    ]
    try:
        wait_until(lambda: all(replica.metrics() for replica in replicas), 90, "the replicas' metrics", 0.5)
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def spread(replicas: list[Replica]) -> bool:
    held = [held_shards(replica.metrics()) for replica in replicas]
    return all(held) and sum(len(h) for h in held) == len(set().union(*held)) == SHARDS


def measure(
    group: Group,
    replicas: list[Replica],
    backend: ApiBackend,
    objects: kubernetes.client.CustomObjectsApi,
    idle_rss: float,
    progress: Progress,
) -> Row:
    started = time.monotonic()
    wait_until(lambda: spread(replicas), 90, "every shard held, each replica holding some", 1.0)
    deadline = started + 3 * group.interval_s + 30
    ticks_at_start = sum(reconcile_histogram(r.metrics_port).count for r in replicas)
    while time.monotonic() < deadline:  # warm-up: each experiment ticked twice, on average, since these started
        if sum(reconcile_histogram(r.metrics_port).count for r in replicas) - ticks_at_start >= 2 * group.experiments:
            break
        time.sleep(1)
    progress(f"{len(replicas)} replica(s) warm after {time.monotonic() - started:.0f}s; measuring {group.window_s:g}s")
    pids = [r.process.pid for r in replicas if r.process is not None]
    before = ([cpu_seconds(p) for p in pids], [reconcile_histogram(r.metrics_port) for r in replicas], api_cpu(backend))
    window_start, worst, never = time.monotonic(), 0.0, 0
    while time.monotonic() - window_start < group.window_s:
        age, never = oldest_analysis(objects)
        worst = max(worst, age)
        time.sleep(2)
    after = ([cpu_seconds(p) for p in pids], [reconcile_histogram(r.metrics_port) for r in replicas], api_cpu(backend))
    elapsed = time.monotonic() - window_start
    histograms = [a.minus(b) for a, b in zip(after[1], before[1], strict=True)]
    return Row(
        experiments=group.experiments,
        interval_s=group.interval_s,
        replicas=len(replicas),
        backend=backend.label,
        elapsed_s=elapsed,
        ticks=[h.count for h in histograms],
        cpu_s=[a - b for a, b in zip(after[0], before[0], strict=True)],
        rss_mb=[rss_mb(p) for p in pids],
        idle_rss_mb=idle_rss,
        owned=[total(r.metrics(strict=True), "mlrollouts_experiments_owned") for r in replicas],
        reconcile=histogram_sum(histograms),
        worst_age_s=worst,
        never_analysed=never,
        api_cpu_s=after[2] - before[2] if before[2] >= 0 else -1.0,
        load=f"{load_average().split(' / ')[0]}",
    )


def run_group(group: Group, prometheus: PrometheusServer, folder: pathlib.Path, progress: Progress) -> list[Row]:
    rows: list[Row] = []
    idle_rss = 0.0
    with api_server(folder) as backend:
        progress(f"{group.experiments} experiments at {group.interval_s}s; API server: {backend.label}")
        api = kubernetes.config.new_client_from_config(config_file=str(backend.kubeconfig))
        objects = kubernetes.client.CustomObjectsApi(api)
        try:
            for count in group.replicas:
                with replicas_running(count, backend, folder) as replicas:
                    if not rows:  # the first set starts before the experiments exist: its idle RSS is the baseline
                        time.sleep(2)
                        idle_rss = rss_mb(replicas[0].process.pid) if replicas[0].process else 0.0
                        create(objects, group, prometheus.address)
                        progress(f"{group.experiments} experiments created")
                    rows.append(measure(group, replicas, backend, objects, idle_rss, progress))
                    progress(f"done: {rows[-1].cells()}")
        finally:
            api.close()
    return rows


def create(objects: kubernetes.client.CustomObjectsApi, group: Group, prometheus: str) -> None:
    manifests = [experiment_manifest(f"exp-{i:04d}", prometheus, group.interval_s) for i in range(group.experiments)]
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(lambda m: objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, m), manifests)
        )


def run(progress: Progress) -> BenchTable:
    started, load_before = time.monotonic(), load_average()
    rows: list[Row] = []
    with (
        scraped_exporter(VARIANTS, seed=3, progress=progress, **LOAD) as (_, prometheus),
        tempfile.TemporaryDirectory() as tmp,
    ):
        for group in GROUPS:
            folder = pathlib.Path(tmp) / f"{group.experiments}-{group.interval_s}"
            folder.mkdir()
            rows.extend(run_group(group, prometheus, folder, progress))
    backends = sorted({row.backend for row in rows})
    cells = [row.cells() for row in rows]
    return BenchTable(
        title=f"Scaling: experiments × replicas × interval (API server: {', '.join(backends)}; real Prometheus)",
        columns=list(cells[0]),
        rows=[list(c.values()) for c in cells],
        notes=notes(rows, time.monotonic() - started, load_before),
    )


def notes(rows: list[Row], elapsed_s: float, load_before: str) -> tuple[str, ...]:
    keeping_up = [row for row in rows if row.ticks_per_s >= 0.9 * row.ideal]
    basis = keeping_up or rows
    cpu_ms = max(row.cpu_ms_per_tick for row in basis)  # the dearest tick among rows not inflated by queueing
    rss_k = max(row.rss_per_1000 for row in rows)
    idle = max(row.idle_rss_mb for row in rows)
    api_rows = [row for row in basis if row.api_cpu_s >= 0]
    per_core = 1000 / cpu_ms
    per_replica_60 = HEADROOM * per_core * 60
    need_60 = PROJECTED / 60
    cores_60 = need_60 * cpu_ms / 1000
    replicas_60 = math.ceil(cores_60 / HEADROOM)
    single = [row for row in rows if row.replicas == 1]
    triple = [row for row in rows if row.replicas == 3]
    lines = [
        "Each experiment: an A/B test of two equal models that stays Progressing (the replicas' benchmark "
        "experiment); ideal ticks/s = experiments / interval; ticks = mlrollouts_reconcile_duration_seconds_count "
        "over the window, summed over the replicas; reconcile p95 over the replicas' summed histograms.",
        "CPU from /proc/PID/stat (utime+stime) of each replica; 'CPU ms/tick all' = all replicas' CPU / all their "
        "ticks. RSS per 1,000 experiments = (sum of the replicas' RSS - replicas × the idle RSS of a replica "
        f"started before any experiment existed, {idle:.0f} MB) × 1,000 / experiments. 'max since last analysis' "
        "= the largest now - status.lastAnalysisAt over polls every 2 s in the window.",
        f"Projection for {PROJECTED:,} experiments, from the measured figures: the dearest tick among the rows that "
        f"kept up (achieved ≥ 0.9 × ideal; all rows if none did) costs {cpu_ms:.2f} ms of operator CPU, so one core "
        f"runs 1000 / {cpu_ms:.2f} = {per_core:.0f} ticks/s. At a 60 s interval {PROJECTED:,} experiments need "
        f"{PROJECTED:,} / 60 = {need_60:.0f} ticks/s × {cpu_ms:.2f} ms = {cores_60:.2f} cores; planning each "
        f"replica at ≤ {HEADROOM:.0%} of its core ({HEADROOM:.1f} × {per_core:.0f} × 60 = {per_replica_60:,.0f} "
        f"experiments per replica), that is ⌈{cores_60:.2f} / {HEADROOM:.1f}⌉ = {replicas_60} replica(s) with a "
        f"core each. At a 10 s interval: {PROJECTED:,} / 10 = {PROJECTED / 10:.0f} ticks/s = "
        f"{PROJECTED / 10 * cpu_ms / 1000:.1f} cores → {math.ceil(PROJECTED / 10 * cpu_ms / 1000 / HEADROOM)} "
        f"replicas. Memory: {PROJECTED // 1000} × {rss_k:.0f} MB (the largest per-1,000 figure measured) = "
        f"{PROJECTED / 1000 * rss_k / 1024:.1f} GB over all replicas, plus {idle:.0f} MB idle per replica "
        f"({replicas_60} × {idle:.0f} MB = {replicas_60 * idle / 1024:.1f} GB at 60 s).",
    ]
    if api_rows:
        api_ms = max(row.api_cpu_s * 1000 / max(sum(row.ticks), 1) for row in api_rows)
        lines.append(
            f"The API server pays too: kube-apiserver + etcd used up to {api_ms:.2f} ms of CPU per tick here (the "
            f"status write, its watch events to every replica, the poller's LISTs), i.e. {need_60:.0f} × "
            f"{api_ms:.2f} ms = {need_60 * api_ms / 1000:.2f} cores of the control plane at 60 s for "
            f"{PROJECTED:,} experiments."
        )
    if single and triple:
        one, three = single[-1], triple[-1]
        lines.append(
            f"Replicas and per-tick cost ({one.experiments} experiments at {one.interval_s} s): "
            f"{one.cpu_ms_per_tick:.2f} ms/tick with 1 replica, {three.cpu_ms_per_tick:.2f} with 3; each replica "
            "still receives every experiment's watch events (a shard filters what it reconciles, not what it "
            "watches), so that fixed share is paid once per replica."
        )
    lines += [
        "What limits this machine, unlike a cluster: its 2 cores are shared by every replica, the API server and "
        "etcd, Prometheus, the exporter, this poller and other engineers' work, so adding a replica here adds "
        "processes, not cores: the total ticks/s stays bounded by the machine (sum of the replicas' CPU % near the "
        "cores left over), and achieved / ideal below 1 at high counts is the machine as much as the operator. "
        "In a cluster each replica gets a core (requests: cpu 1) and the API server its own nodes, so the "
        "projection above scales with the replicas.",
        f"Load average 1/5/15 min at the start {load_before}, at the end {load_average()}; whole run "
        f"{elapsed_s:.0f} s.",
    ]
    return tuple(lines)

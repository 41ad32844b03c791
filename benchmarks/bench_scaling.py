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
    idle_cpu: float
    """CPU seconds per second of one replica before any experiment existed (Lease renewals, kopf's idle loop)."""
    api_idle_cpu: float
    """kube-apiserver + etcd CPU seconds per second meanwhile (-1: the emulator)."""
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

    @property
    def rss_per_1000_each(self) -> float:
        """A replica's RSS growth over idle per 1,000 experiments in the cluster (not only in its shards): every
        replica watches every experiment and parks a daemon for each it does not own."""
        return self.rss_per_1000 / self.replicas

    def cells(self) -> dict[str, str]:
        each = lambda values: " / ".join(values)  # noqa: E731
        return {
            "experiments": str(self.experiments),
            "interval s": str(self.interval_s),
            "replicas": str(self.replicas),
            "ticks/s": f"{self.ticks_per_s:.1f}",
            "ideal ticks/s": f"{self.ideal:.0f}",
            "achieved / ideal": f"{self.ticks_per_s / self.ideal:.2f}",
            "experiments per replica": each(f"{n:.0f}" for n in self.owned),
            "ticks/s per replica": each(f"{t / self.elapsed_s:.1f}" for t in self.ticks),
            "CPU ms/tick per replica": "no ticks"
            if not sum(self.ticks)
            else each(f"{c * 1000 / max(t, 1):.1f}" for c, t in zip(self.cpu_s, self.ticks, strict=True)),
            "CPU ms/tick all": f"{self.cpu_ms_per_tick:.2f}" if sum(self.ticks) else "no ticks",
            "CPU % of a core per replica": each(f"{c / self.elapsed_s * 100:.0f}" for c in self.cpu_s),
            "RSS MB per replica": each(f"{r:.0f}" for r in self.rss_mb),
            "RSS MB per 1,000 experiments: all / per replica": f"{self.rss_per_1000:.0f} / "
            f"{self.rss_per_1000_each:.0f}",
            "reconcile p95 ms": milliseconds(self.reconcile.quantile(0.95), self.reconcile.buckets),
            "max since last analysis s": "never analysed: " + str(self.never_analysed)
            if self.never_analysed
            else f"{self.worst_age_s:.1f}",
            "API server + etcd CPU ms/tick": "in-process"
            if self.api_cpu_s < 0
            else f"{self.api_cpu_s * 1000 / sum(self.ticks):.2f}"
            if sum(self.ticks)
            else "no ticks",
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


def oldest_analysis(objects: kubernetes.client.CustomObjectsApi, since: datetime | None = None) -> tuple[float, int]:
    """Seconds since the least recently analysed experiment's last analysis, and how many were never analysed (or,
    given `since`, not analysed since then)."""
    now, worst, never = datetime.now(UTC), 0.0, 0
    for item in survey_items(objects):
        stamp = (item.get("status") or {}).get("lastAnalysisAt")
        if stamp is None or (since is not None and datetime.fromisoformat(stamp) < since):
            never += 1
        if stamp is not None:
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
    idle: tuple[float, float, float],
    progress: Progress,
) -> Row:
    started, started_at = time.monotonic(), datetime.now(UTC)
    wait_until(lambda: spread(replicas), 90, "every shard held, each replica holding some", 1.0)
    deadline = started + 2 * group.interval_s + 20
    ticks_at_start = sum(reconcile_histogram(r.metrics_port).count for r in replicas)
    while time.monotonic() < deadline:  # warm-up: every experiment analysed by these replicas (not only before)
        ticked = sum(reconcile_histogram(r.metrics_port).count for r in replicas) - ticks_at_start
        if ticked >= group.experiments and oldest_analysis(objects, since=started_at)[1] == 0:
            break
        time.sleep(2)
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
        idle_rss_mb=idle[0],
        idle_cpu=idle[1],
        api_idle_cpu=idle[2],
        owned=[total(r.metrics(strict=True), "mlrollouts_experiments_owned") for r in replicas],
        reconcile=histogram_sum(histograms),
        worst_age_s=worst,
        never_analysed=never,
        api_cpu_s=after[2] - before[2] if before[2] >= 0 else -1.0,
        load=f"{load_average().split(' / ')[0]}",
    )


def idle_figures(replica: Replica, backend: ApiBackend, seconds: float = 8.0) -> tuple[float, float, float]:
    """RSS MB and CPU s/s of a replica with no experiment once it holds every shard (its Lease rounds running), and
    the API server's CPU s/s meanwhile (-1 for the emulator)."""
    assert replica.process is not None
    wait_until(lambda: spread([replica]), 60, "the idle replica holding every shard", 0.5)
    cpu, api, started = cpu_seconds(replica.process.pid), api_cpu(backend), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    api_idle = (api_cpu(backend) - api) / elapsed if api >= 0 else -1.0
    return rss_mb(replica.process.pid), (cpu_seconds(replica.process.pid) - cpu) / elapsed, api_idle


def run_group(
    group: Group, prometheus: PrometheusServer, folder: pathlib.Path, progress: Progress, stopped: list[str]
) -> list[Row]:
    """The group's rows; a replica count whose replicas never spread the shards is named in `stopped` instead (a
    finding for the notes, not a crash of the whole benchmark)."""
    rows: list[Row] = []
    idle = (0.0, 0.0, -1.0)  # a replica's RSS MB and CPU s/s, the API server's CPU s/s, before any experiment
    with api_server(folder) as backend:
        progress(f"{group.experiments} experiments at {group.interval_s}s; API server: {backend.label}")
        api = kubernetes.config.new_client_from_config(config_file=str(backend.kubeconfig))
        objects = kubernetes.client.CustomObjectsApi(api)
        try:
            for count in group.replicas:
                with replicas_running(count, backend, folder) as replicas:
                    if not rows:  # the first set starts before the experiments exist: its idle RSS is the baseline
                        idle = idle_figures(replicas[0], backend)
                        create(objects, group, prometheus.address)
                        progress(f"{group.experiments} experiments created")
                    try:
                        rows.append(measure(group, replicas, backend, objects, idle, progress))
                    except AssertionError as error:
                        stopped.append(
                            f"{group.experiments} experiments at {group.interval_s} s, {count} replicas: {error}"
                        )
                        progress(f"stopped: {stopped[-1]}")
                        continue
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
    stopped: list[str] = []
    with (
        scraped_exporter(VARIANTS, seed=3, progress=progress, **LOAD) as (_, prometheus),
        tempfile.TemporaryDirectory() as tmp,
    ):
        for group in GROUPS:
            folder = pathlib.Path(tmp) / f"{group.experiments}-{group.interval_s}"
            folder.mkdir()
            rows.extend(run_group(group, prometheus, folder, progress, stopped))
    if not rows:
        return BenchTable("Scaling: nothing measured", ["stopped"], [[entry] for entry in stopped])
    backends = sorted({row.backend for row in rows})
    cells = [row.cells() for row in rows]
    return BenchTable(
        title=f"Scaling: experiments × replicas × interval (API server: {', '.join(backends)}; real Prometheus)",
        columns=list(cells[0]),
        rows=[list(c.values()) for c in cells],
        notes=notes(rows, time.monotonic() - started, load_before, stopped),
    )


def pair(rows: list[Row]) -> tuple[Row, Row] | None:
    """The 1-replica and largest-replica-count rows of one group: those that both kept up (ticks ≥ 0.9 × ideal,
    so queueing does not inflate the CPU per tick) with the most experiments, else the pair that came closest."""
    groups: dict[tuple[int, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.experiments, row.interval_s), []).append(row)
    pairs = []
    for members in groups.values():
        one = [row for row in members if row.replicas == 1]
        most = max(members, key=lambda row: row.replicas)
        if one and most.replicas > 1 and sum(one[0].ticks) > 0 and sum(most.ticks) > 0:
            closest = min(row.ticks_per_s / row.ideal for row in (one[0], most))
            kept_up = closest >= 0.9
            pairs.append((kept_up, one[0].experiments if kept_up else closest, one[0], most))
    if not pairs:
        return None
    _, _, one, most = max(pairs, key=lambda entry: (entry[0], entry[1]))
    return one, most


def projection(rows: list[Row]) -> list[str]:
    """The 10,000-experiment arithmetic from the measured CPU per tick, its growth per replica, and RSS."""
    found = pair(rows)
    if found is None:
        return ["No group has both 1 and several replicas measured: no projection."]
    one, most = found
    f, r = one.idle_cpu, most.replicas
    # Per tick, net of each replica's idle CPU (f s/s, paid whatever the ticks): c(R) = c1 + (R - 1) × e, where e is
    # what each added replica costs per cluster tick (it decodes every other replica's status-write events).
    c1 = (sum(one.cpu_s) - f * one.elapsed_s) * 1000 / max(sum(one.ticks), 1)
    cr = (sum(most.cpu_s) - r * f * most.elapsed_s) * 1000 / max(sum(most.ticks), 1)
    extra = max(0.0, (cr - c1) / (r - 1))
    idle, each_k = one.idle_rss_mb, most.rss_per_1000_each
    kept_up = one.ticks_per_s >= 0.9 * one.ideal and most.ticks_per_s >= 0.9 * most.ideal
    basis = "both rows kept up" if kept_up else "not both kept up: queueing inflates the CPU per tick"
    lines = [
        f"Projection for {PROJECTED:,} experiments, from {one.experiments} experiments at {one.interval_s} s "
        f"({basis}). An idle replica (no experiment, every shard held) uses f = {f * 1000:.0f} ms of CPU per s. "
        f"Net of that, a tick costs c1 = {c1:.2f} ms with 1 replica and {cr:.2f} ms with {r}; every replica watches "
        f"every experiment, so each added replica costs e = max(0, ({cr:.2f} - {c1:.2f}) / {r - 1}) = {extra:.2f} ms "
        f"more per tick{' (measured negative: within the noise)' if cr < c1 else ''}; with R replicas the operators "
        "need ticks/s × (c1 + (R - 1) × e) + R × f cores."
    ]
    for interval in (60, 10):
        need = PROJECTED / interval
        for replicas in range(1, 201):
            per_tick = c1 + (replicas - 1) * extra
            cores = need * per_tick / 1000 + replicas * f
            if cores <= HEADROOM * replicas:
                memory = replicas * (idle + PROJECTED / 1000 * each_k)
                lines.append(
                    f"At a {interval} s interval: {PROJECTED:,} / {interval} = {need:.0f} ticks/s; with R = "
                    f"{replicas}: {need:.0f}/s × ({c1:.2f} + {replicas - 1} × {extra:.2f}) ms + {replicas} × "
                    f"{f * 1000:.0f} ms/s = {cores * 1000:.0f} ms/s = {cores:.2f} cores ≤ {HEADROOM:.1f} × {replicas} "
                    "(each replica at ≤ "
                    f"{HEADROOM:.0%} of its own core): {replicas} {'replica' if replicas == 1 else 'replicas'}, "
                    f"{PROJECTED / replicas:,.0f} experiments {'in it' if replicas == 1 else 'each'}. "
                    f"Memory: each replica {idle:.0f} MB idle + {PROJECTED // 1000} × {each_k:.0f} MB (a "
                    f"replica's growth per 1,000 experiments in the cluster, measured with {r} replicas) = "
                    f"{idle + PROJECTED / 1000 * each_k:.0f} MB; {replicas} × that = {memory / 1024:.1f} GB in all "
                    "(an upper bound with more replicas, each owning a smaller share)."
                )
                break
        else:
            lines.append(
                f"At a {interval} s interval no replica count up to 200 keeps each replica under {HEADROOM:.0%} "
                f"of a core: {need:.0f} ticks/s × e = {extra:.2f} ms per added replica grows as fast as the cores."
            )
    return lines


def notes(rows: list[Row], elapsed_s: float, load_before: str, stopped: list[str]) -> tuple[str, ...]:
    idle = max(row.idle_rss_mb for row in rows)
    kept_up = [row for row in rows if row.ticks_per_s >= 0.9 * row.ideal]
    basis = kept_up or [row for row in rows if sum(row.ticks)] or rows  # a window without a tick has no per-tick cost
    api_rows = [row for row in basis if row.api_cpu_s >= 0]
    need_60 = PROJECTED / 60
    lines = [
        "Each experiment: an A/B test of two equal models that stays Progressing (the replicas' benchmark "
        "experiment); ideal ticks/s = experiments / interval; ticks = mlrollouts_reconcile_duration_seconds_count "
        "over the window, summed over the replicas (a replica counts only the ticks of experiments it owns); "
        "reconcile p95 over the replicas' summed histograms.",
        "CPU from /proc/PID/stat (utime+stime) of each replica; 'CPU ms/tick all' = all replicas' CPU / all their "
        "ticks. RSS per 1,000 experiments: all = (sum of the replicas' RSS - replicas × the idle RSS of a replica "
        f"started before any experiment existed, {idle:.0f} MB) × 1,000 / experiments; per replica = all / "
        "replicas. 'max since last analysis' = the largest now - status.lastAnalysisAt over polls every 2 s in "
        "the window; 'never analysed: N' = N experiments had no analysis yet at the window's end.",
        *projection(rows),
    ]
    if api_rows:
        net = [
            (row.api_cpu_s - max(row.api_idle_cpu, 0.0) * row.elapsed_s) * 1000 / max(sum(row.ticks), 1)
            for row in api_rows
        ]
        api_ms, idle_api = max(net), max(row.api_idle_cpu for row in api_rows)
        lines.append(
            f"The API server pays too: kube-apiserver + etcd used {idle_api * 1000:.0f} ms of CPU per s with one idle "
            f"replica and no experiment, and on top of that up to {api_ms:.2f} ms per tick in the "
            f"{'rows that kept up' if kept_up else 'rows (none kept up)'} (the read and status write, their "
            "watch events to every replica, Lease renewals, this poller's LISTs every 2 s), i.e. "
            f"{need_60:.0f}/s × {api_ms:.2f} ms = {need_60 * api_ms / 1000:.2f} cores of the control plane at 60 s "
            f"for {PROJECTED:,} experiments."
        )
    starved = [row for row in rows if 0 < row.ticks_per_s < 0.9 * row.ideal]
    if starved and api_rows:
        busiest = max(max(row.cpu_s) / row.elapsed_s for row in starved)
        operator_ms = sum(row.cpu_ms_per_tick for row in starved) / len(starved)
        api_starved = [row.api_cpu_s * 1000 / max(sum(row.ticks), 1) for row in starved if row.api_cpu_s >= 0]
        if busiest < 0.5 and api_starved:
            lines.append(
                f"Where achieved / ideal < 0.9 no replica used more than {busiest:.0%} of a core: the replicas were "
                "not CPU-bound but waited on each tick's API round trips, to an API server that spent "
                f"{sum(api_starved) / len(api_starved):.1f} ms of CPU per tick in those rows (the operators "
                f"{operator_ms:.1f}), on the same shared cores."
            )
    if stopped:
        lines.append("Not measured (timed out): " + "; ".join(stopped))
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

"""Active-active replicas at the issue's scale: 3 operator processes, 300 experiments, one replica SIGKILLed
and restarted, at a 10 s and a 5 s analysis interval.

The same scenario as tests/controller/test_active_active.py (which runs 45 experiments to fit in `make test`):
real `mlrollouts run --shards 16` processes (the chart's sharding flags) against the real kube-apiserver + etcd
when built (`make controlplane`; the emulator otherwise, said so in the table), a real Prometheus scraping a real
exporter; a fresh API server per interval. Measured: experiments and ticks per replica before the kill, the time
until the survivors hold every shard and until each of the killed replica's experiments was analysed again, the
longest any experiment went without an analysis (status.lastAnalysisAt), and the writes the resourceVersion guard
refused.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import kubernetes

from benchmarks.harness import BenchTable, Progress, api_server, load_average, scraped_exporter
from mlrollouts.controller.leases import ShardingConfig
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.replicas import (
    GROUP,
    PLURAL,
    VERSION,
    KillReport,
    Replica,
    experiment_manifest,
    kill_one_replica,
)

EXPERIMENTS, REPLICAS, SHARDS = 300, 3, 16
INTERVALS_S = (10, 5)
# Generous, so that a loaded machine yields slow figures rather than none: the real API server costs more CPU per
# request than the emulator, and at 5 s the 300 experiments may ask more of 2 shared cores than they have.
WARMUP_TIMEOUT_S, TAKEOVER_TIMEOUT_S = 300, 150


@dataclass(frozen=True)
class Outcome:
    """One interval's run: the report, or why the scenario stopped (a timeout is a finding, not a crash)."""

    interval_s: int
    backend: str
    report: KillReport | None
    failure: str
    load_before: str
    load_after: str
    seconds: float
    logs: pathlib.Path


def keep_logs(folder: pathlib.Path, interval_s: int) -> pathlib.Path:
    """The replicas' logs outlive the run's temporary folder: a refused write or a slow takeover is read there."""
    kept = pathlib.Path(tempfile.mkdtemp(prefix=f"mlrollouts-bench-replicas-{interval_s}s-"))
    for log in folder.glob("replica-*.log"):
        shutil.copy(log, kept / log.name)
    return kept


def scenario(interval_s: int, prometheus: PrometheusServer, folder: pathlib.Path, progress: Progress) -> Outcome:
    started, load_before = time.monotonic(), load_average()
    report, failure = None, ""
    with api_server(folder) as backend:
        progress(f"{interval_s}s interval, API server: {backend.label}")
        api = kubernetes.config.new_client_from_config(config_file=str(backend.kubeconfig))
        objects = kubernetes.client.CustomObjectsApi(api)
        replicas = [
            Replica(f"replica-{i}", backend.kubeconfig, folder / f"replica-{i}.log", SHARDS).start()
            for i in range(REPLICAS)
        ]
        names = [f"exp-{i:03d}" for i in range(EXPERIMENTS)]
        try:
            manifests = [experiment_manifest(name, prometheus.address, interval_s) for name in names]
            with ThreadPoolExecutor(4) as pool:
                create = lambda m: objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, m)  # noqa: E731
                list(pool.map(create, manifests))
            progress(f"{EXPERIMENTS} experiments created")
            report = kill_one_replica(
                objects,
                kubernetes.client.CoordinationV1Api(api),
                replicas,
                names,
                steady_s=20,
                warmup_timeout_s=WARMUP_TIMEOUT_S,
                takeover_timeout_s=TAKEOVER_TIMEOUT_S,
                progress=progress,
            )
            progress(str(report))
        except AssertionError as error:  # a timeout in the scenario: reported in the table, the next run goes on
            failure = str(error).splitlines()[0][:300]
            progress(f"scenario stopped: {failure}")
        finally:
            for replica in replicas:
                replica.stop()
            api.close()
    logs = keep_logs(folder, interval_s)
    progress(f"replica logs kept in {logs}")
    return Outcome(
        interval_s, backend.label, report, failure, load_before, load_average(), time.monotonic() - started, logs
    )


MEASURES = (
    "API server",
    "analysis interval s",
    "experiments per replica before the kill",
    "shards per replica before the kill",
    "ticks/s per replica before the kill",
    "ticks/s all replicas vs ideal (ratio)",
    "SIGKILL -> survivors hold every shard, s",
    "SIGKILL -> every killed-replica experiment analysed again, s",
    "longest without analysis before the kill (steady state), s",
    "longest without analysis after warm-up, kill included, s",
    "shards per survivor after",
    "killed replica restarted -> holds its share again, s (incl. process start)",
    "status writes refused (resourceVersion guard) after warm-up, kill and rejoin",
    "survivors' writes not sent after warm-up (Lease not provable)",
    "survivors' shard lapses after warm-up (no renewal within the deadline)",
    "warm-up (start, create, spread, all analysed, 10 s without a refusal), s",
    "writes refused during creation (kopf's first patches vs first ticks)",
    "load average 1/5/15 min, start -> end",
    "run s",
)


def rows_of(outcome: Outcome) -> list[str]:
    """One column of the table (same order as MEASURES)."""
    r, interval = outcome.report, outcome.interval_s
    if r is None:
        return [outcome.backend, str(interval), f"stopped: {outcome.failure}"] + ["-"] * (len(MEASURES) - 3)
    name, worst = r.worst_staleness
    return [
        outcome.backend,
        str(interval),
        " / ".join(f"{n:.0f}" for n in r.owned_before),
        " / ".join(str(n) for n in r.shards_before),
        " / ".join(f"{t:.1f}" for t in r.ticks_per_s_before),
        f"{sum(r.ticks_per_s_before):.1f} vs {EXPERIMENTS / interval:.0f} "
        f"({sum(r.ticks_per_s_before) / (EXPERIMENTS / interval):.2f})",
        f"{r.takeover_s:.1f}",
        f"{r.resumed_s:.1f}",
        f"{r.worst_steady_staleness:.1f}",
        f"{worst:.1f} ({name})",
        " / ".join(str(n) for n in r.shards_after),
        f"{r.rejoin_s:.1f}",
        f"{r.refusals:.0f}",
        f"{r.writes_blocked:.0f}",
        f"{r.lapses:.0f}",
        f"{r.warmup_s:.0f}",
        f"{r.warmup_refusals:.0f}",
        f"{outcome.load_before} -> {outcome.load_after}",
        f"{outcome.seconds:.0f}",
    ]


def run(progress: Progress) -> BenchTable:
    started = time.monotonic()
    outcomes = []
    with (
        scraped_exporter(["churn-v2", "churn-v3"], seed=3, rate=200, success=0.75, latency=0.05) as (_, prometheus),
        tempfile.TemporaryDirectory() as tmp,
    ):
        for interval_s in INTERVALS_S:
            folder = pathlib.Path(tmp) / f"{interval_s}s"
            folder.mkdir()
            outcomes.append(scenario(interval_s, prometheus, folder, progress))
    columns = [list(rows_of(outcome)) for outcome in outcomes]
    backends = sorted({outcome.backend.split(" (")[0] for outcome in outcomes})
    return BenchTable(
        title=f"Active-active replicas: {REPLICAS} operators, {EXPERIMENTS} experiments, one SIGKILLed; "
        f"API server: {', '.join(backends)}",
        columns=["measure", *(f"{outcome.interval_s} s interval" for outcome in outcomes)],
        rows=[[measure, *(column[i] for column in columns)] for i, measure in enumerate(MEASURES)],
        notes=notes(outcomes, time.monotonic() - started),
    )


def notes(outcomes: list[Outcome], elapsed_s: float) -> tuple[str, ...]:
    config = ShardingConfig("x", "default")
    found = [
        f"{o.interval_s} s: takeover {o.report.takeover_s:.1f} s, every experiment of the killed replica analysed "
        f"again after {o.report.resumed_s:.1f} s, longest without analysis {o.report.worst_staleness[1]:.1f} s "
        f"against a protocol bound of {config.takeover_bound:g} + {o.interval_s} = "
        f"{config.takeover_bound + o.interval_s:g} s; before the kill the machine ran "
        f"{sum(o.report.ticks_per_s_before):.1f} of the ideal {EXPERIMENTS / o.interval_s:.0f} ticks/s "
        f"(steady-state staleness {o.report.worst_steady_staleness:.1f} s)"
        for o in outcomes
        if o.report is not None
    ]
    stopped = [f"{o.interval_s} s: {o.failure} (logs: {o.logs})" for o in outcomes if o.report is None]
    return (
        f"Lease timings: duration {config.lease_duration:g} s, renew deadline {config.renew_deadline:g} s, "
        f"retry period {config.retry_period:g} s; bound on takeover = duration + 2 x retry = "
        f"{config.takeover_bound:g} s, plus at most one analysis interval before the next analysis.",
        "Takeover is measured by polling the survivors' mlrollouts_shard_held; resumption and staleness by "
        "polling status.lastAnalysisAt of every experiment once a second (resolution ~1 s).",
        "Refusals: mlrollouts_write_conflicts_total summed over the replicas (the killed one up to its last "
        "scrape, the restarted one from its start), from the end of the warm-up to the end of the run; they must "
        "be 0. During creation every replica's kopf patches each new object once (finalizer, last-handled "
        "configuration), which races with the first ticks; those refusals are counted apart and the warm-up waits "
        "10 s without any.",
        "Reading the staleness: the protocol's part is the takeover and the resumption; what exceeds the bound is "
        "throughput (after the kill two survivors on the same 2 cores carry the third's share too). "
        + "; ".join(found)
        + ".",
        *(
            ["Stopped runs (a timeout in the scenario, not a crash of the benchmark): " + "; ".join(stopped)]
            * bool(stopped)
        ),
        "All processes (3 operators, the API server and etcd or the emulator, Prometheus, the exporter and this "
        "poller) share one 2-core machine that other work also loads (see the load averages); per-replica tick "
        f"rates are bounded by the machine rather than by the replicas. Whole run {elapsed_s:.0f} s.",
    )

"""Active-active replicas at the issue's scale: 3 operator processes, 300 experiments, one replica SIGKILLed
and restarted.

The same scenario as tests/controller/test_active_active.py (which runs 45 experiments to fit in `make test`):
real `mlrollouts run --shards 16` processes against the emulated API server (a thread of this process), a real
Prometheus scraping a real exporter. Measured: experiments and ticks per replica before the kill, the time until
the survivors hold every shard and until each of the killed replica's experiments was analysed again, the longest
any experiment went without an analysis (status.lastAnalysisAt), and the writes the resourceVersion guard refused.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes

from benchmarks.harness import BenchTable, Progress, scraped_exporter
from mlrollouts.controller.leases import ShardingConfig
from mlrollouts.localstack.replicas import GROUP, PLURAL, VERSION, Replica, experiment_manifest, kill_one_replica
from mlrollouts.localstack.server import run_apiserver

EXPERIMENTS, REPLICAS, SHARDS, INTERVAL_S = 300, 3, 16, 10


def start_apiserver(kubeconfig: pathlib.Path) -> tuple[Any, str]:
    """The emulator. The real kube-apiserver (`make controlplane`) would keep its CPU apart from the replicas', but
    today it refuses these experiments' status writes (an A/B test's unbounded confidence interval is written as
    null, which the CRD's schema forbids), so nothing would be analysed there."""
    return run_apiserver(0, kubeconfig), "emulated"


def keep_logs(folder: pathlib.Path) -> pathlib.Path:
    """The replicas' logs outlive the run's temporary folder: a refused write or a slow takeover is read there."""
    kept = pathlib.Path(tempfile.mkdtemp(prefix="mlrollouts-bench-replicas-"))
    for log in folder.glob("replica-*.log"):
        shutil.copy(log, kept / log.name)
    return kept


def run(progress: Progress) -> BenchTable:
    started = time.monotonic()
    with (
        scraped_exporter(["churn-v2", "churn-v3"], seed=3, rate=200, success=0.75, latency=0.05) as (_, prometheus),
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = pathlib.Path(tmp)
        apiserver, backend = start_apiserver(folder / "kubeconfig")
        progress(f"API server: {backend}")
        assert apiserver.kubeconfig is not None
        api = kubernetes.config.new_client_from_config(config_file=str(apiserver.kubeconfig))
        objects = kubernetes.client.CustomObjectsApi(api)
        replicas = [
            Replica(f"replica-{i}", apiserver.kubeconfig, folder / f"replica-{i}.log", SHARDS).start()
            for i in range(REPLICAS)
        ]
        names = [f"exp-{i:03d}" for i in range(EXPERIMENTS)]
        kept = None
        try:
            manifests = [experiment_manifest(name, prometheus.address, INTERVAL_S) for name in names]
            with ThreadPoolExecutor(4) as pool:
                create = lambda m: objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, m)  # noqa: E731
                list(pool.map(create, manifests))
            progress(f"{EXPERIMENTS} experiments created")
            report = kill_one_replica(
                objects, kubernetes.client.CoordinationV1Api(api), replicas, names, steady_s=20, progress=progress
            )
        finally:
            for replica in replicas:
                replica.stop()
            api.close()
            apiserver.stop()
            kept = keep_logs(folder)
    progress(f"{report}\nreplica logs kept in {kept}")
    config = ShardingConfig("x", "default")
    name, worst = report.worst_staleness
    rows = [
        ["API server", backend],
        ["experiments / replicas / shards", f"{EXPERIMENTS} / {REPLICAS} / {SHARDS}"],
        ["analysis interval s", str(INTERVAL_S)],
        ["experiments per replica before the kill", " / ".join(f"{n:.0f}" for n in report.owned_before)],
        ["shards per replica before the kill", " / ".join(str(n) for n in report.shards_before)],
        ["ticks/s per replica before the kill", " / ".join(f"{r:.1f}" for r in report.ticks_per_s_before)],
        ["ticks/s all replicas vs ideal", f"{sum(report.ticks_per_s_before):.1f} vs {EXPERIMENTS / INTERVAL_S:.0f}"],
        ["SIGKILL -> survivors hold every shard, s", f"{report.takeover_s:.1f}"],
        ["SIGKILL -> every killed-replica experiment analysed again, s", f"{report.resumed_s:.1f}"],
        ["longest without analysis before the kill (steady state), s", f"{report.worst_steady_staleness:.1f}"],
        ["longest without analysis after warm-up, kill included, s", f"{worst:.1f} ({name})"],
        ["shards per survivor after", " / ".join(str(n) for n in report.shards_after)],
        ["killed replica restarted -> holds its share again, s (incl. process start)", f"{report.rejoin_s:.1f}"],
        ["status writes refused (resourceVersion guard) after warm-up, kill and rejoin", f"{report.refusals:.0f}"],
        ["survivors' writes not sent after warm-up (Lease not provable)", f"{report.writes_blocked:.0f}"],
        ["survivors' shard lapses after warm-up (no renewal within the deadline)", f"{report.lapses:.0f}"],
        ["warm-up (start, create, spread, all analysed, 10 s without a refusal), s", f"{report.warmup_s:.0f}"],
        ["writes refused during creation (kopf's first patches vs first ticks)", f"{report.warmup_refusals:.0f}"],
    ]
    return BenchTable(
        title=f"Active-active replicas: 3 operators, 300 experiments, one SIGKILLed; API server: {backend}",
        columns=["measure", "value"],
        rows=rows,
        notes=(
            f"Lease timings: duration {config.lease_duration:g} s, renew deadline {config.renew_deadline:g} s, "
            f"retry period {config.retry_period:g} s; bound on takeover = duration + 2 x retry = "
            f"{config.takeover_bound:g} s, plus at most one analysis interval before the next analysis.",
            "Takeover is measured by polling the survivors' mlrollouts_shard_held; resumption and staleness by "
            "polling status.lastAnalysisAt of every experiment once a second (resolution ~1 s).",
            "Refusals: mlrollouts_write_conflicts_total summed over the replicas (the killed one up to its last "
            "scrape, the restarted one from its start), from the end of the warm-up to the end of the run. During "
            "creation every replica's kopf patches each new object once (finalizer, last-handled configuration), "
            "which races with the first ticks; those refusals are counted apart and the warm-up waits 10 s "
            "without any.",
            "All processes (3 operators, emulator, Prometheus, exporter) share one machine, so per-replica tick "
            "rates are bounded by the emulator and the machine rather than by the replicas.",
            f"Reading the staleness: the protocol's part is the takeover ({report.takeover_s:.1f} s, bound "
            f"{config.takeover_bound:g} s) and the resumption ({report.resumed_s:.1f} s). The rest is throughput: "
            f"before the kill this machine ran {sum(report.ticks_per_s_before):.1f} of the ideal "
            f"{EXPERIMENTS / INTERVAL_S:.0f} ticks/s (steady-state staleness {report.worst_steady_staleness:.1f} s "
            f"for a {INTERVAL_S} s interval), and two survivors sharing the same cores fall further behind, so "
            "experiments queue after a takeover. With a core per replica the capacity grows with the replicas.",
            f"Whole run {time.monotonic() - started:.0f}s.",
        ),
    )

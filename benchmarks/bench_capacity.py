"""Capacity of one replica: 3,000 experiments at a 60 s interval on the real kube-apiserver + etcd.

The question issue 14 asks: is every experiment analysed within interval + 10 % (66 s)? One operator process
(`mlrollouts run --standalone`), a real Prometheus scraping the real exporter, the real API server (the
emulator, in this process, only when its binaries are not built, said so in the table). After a warm-up in
which every experiment was analysed twice on average, a window of two intervals is measured: the operator's
ticks and CPU (/proc), its RSS (and growth over its idle RSS per 1,000 experiments), the reconcile p95, and the
time since each experiment's last analysis (`status.lastAnalysisAt`), sampled several times in the window: the
largest value seen is the "max since last analysis". Takes about eight minutes.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
import time
from dataclasses import dataclass

import httpx
import kubernetes
import yaml
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.bench_operator import (
    LOAD,
    VARIANTS,
    Config,
    Histogram,
    cpu_seconds,
    create_all,
    milliseconds,
    operator_process,
    prometheus_queries,
    reconcile_histogram,
    rss_mb,
    survey,
)
from benchmarks.harness import RESULTS, BenchTable, Progress, api_server, scraped_exporter
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.replicas import GROUP, PLURAL, VERSION

KEPT_LOG = RESULTS / "capacity-operator.log"


@dataclass(frozen=True)
class Point:
    experiments: int
    interval_s: int
    windows: int = 2
    """Intervals measured after the warm-up."""
    samples_per_interval: int = 3
    """Surveys of status.lastAnalysisAt per interval (each lists every experiment)."""

    @property
    def deadline_s(self) -> float:
        return self.interval_s * 1.1


def control_plane_pids(kubeconfig: pathlib.Path) -> list[int]:
    """The kube-apiserver serving `kubeconfig` and its etcd (found by port in /proc), to show their CPU beside the
    operator's: at this scale the API server's writes, not the operator, can be the limit."""
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    port = server.rsplit(":", 1)[1].strip("/")
    commands = {}
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                commands[int(proc.name)] = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
    apiserver = [pid for pid, args in commands.items() if f"--secure-port={port}" in args]
    etcd_urls = [a.split("=", 1)[1] for pid in apiserver for a in commands[pid] if a.startswith("--etcd-servers=")]
    etcd = [pid for pid, args in commands.items() if any(f"--listen-client-urls={url}" in args for url in etcd_urls)]
    return apiserver + etcd


def experiment_requests(api: kubernetes.client.ApiClient) -> dict[str, float]:
    """kube-apiserver's own count of requests on ModelExperiments (apiserver_request_total): GETs, status
    writes, status writes refused by the resourceVersion guard (409/422), and status writes the server failed
    (429/5xx: a 504 is also what it records when the client gave up on its 10 s timeout first)."""
    response = api.rest_client.pool_manager.request(
        "GET", api.configuration.host + "/metrics", headers=api.default_headers
    )
    counts = {"get": 0.0, "status": 0.0, "refused": 0.0, "failed": 0.0}
    for family in text_string_to_metric_families(response.data.decode()):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("resource") != "modelexperiments":
                continue
            if labels.get("verb") == "GET":
                counts["get"] += sample.value
            elif labels.get("verb") == "PATCH" and labels.get("subresource") == "status":
                counts["status"] += sample.value
                counts["refused"] += sample.value if labels.get("code") in ("409", "422") else 0.0
                counts["failed"] += sample.value if labels.get("code") in ("429", "500", "503", "504") else 0.0
    return counts


def histogram(port: int) -> Histogram:
    """The operator's reconcile histogram; a saturated operator answers /metrics (a thread of its own, behind the
    GIL) slowly, so a timed-out scrape is tried again rather than ending the run."""
    for attempt in range(5):
        try:
            return reconcile_histogram(port)
        except httpx.TimeoutException:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def ticks_by_result(port: int) -> dict[str, float]:
    """The operator's reconcile count per result: ok, conflict (re-read at once), error (retried with backoff)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    counts = {"ok": 0.0, "conflict": 0.0, "error": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == "mlrollouts_reconcile_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    counts[sample.labels["result"]] = counts.get(sample.labels["result"], 0.0) + sample.value
    return counts


def never_analysed(api: kubernetes.client.ApiClient, log_path: pathlib.Path, shown: int = 3) -> str:
    """The experiments without status.lastAnalysisAt, by phase/reason, and the last operator log line of a few:
    slow (retried, the log says when) or stuck (no line) reads off it."""
    objects = kubernetes.client.CustomObjectsApi(api)
    items = objects.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"]
    waiting = [i for i in items if not (i.get("status") or {}).get("lastAnalysisAt")]
    if not waiting:
        return "none"
    tally: dict[str, int] = {}
    for item in waiting:
        status = item.get("status") or {}
        key = f"{status.get('phase') or 'no status'}/{status.get('reason') or '-'}"
        tally[key] = tally.get(key, 0) + 1
    lines = log_path.read_text(errors="replace").splitlines()
    last = []
    for item in waiting[:shown]:
        name = item["metadata"]["name"]
        mine = [line for line in lines if f"experiment=default/{name} " in line]
        last.append(f"{name}: {mine[-1][:220] if mine else 'no log line'}")
    return f"{len(waiting)} ({', '.join(f'{k} {n}' for k, n in sorted(tally.items()))}); last log lines: " + "; ".join(
        last
    )


def warm_up(port: int, experiments: int, deadline: float) -> None:
    """Until every experiment ticked twice on average, or the monotonic `deadline`."""
    while time.monotonic() < deadline and histogram(port).count < 2 * experiments:
        time.sleep(2)


POINTS = (Point(int(os.environ.get("MLROLLOUTS_BENCH_CAPACITY", "3000")), 60),)


def measure(point: Point, prometheus: PrometheusServer, tmp: pathlib.Path, progress: Progress) -> dict[str, str]:
    folder = tmp / f"{point.experiments}-{point.interval_s}"
    folder.mkdir()
    config = Config(point.experiments, "gateway", point.interval_s, point.windows * point.interval_s, 0)
    with api_server(folder) as backend:
        api = kubernetes.config.new_client_from_config(config_file=str(folder / "kubeconfig"))
        try:
            with operator_process(folder / "kubeconfig", folder / "operator.log") as (child, port):
                time.sleep(2)
                idle_rss = rss_mb(child.pid)
                started = time.monotonic()
                create_all(api, config, prometheus.address)
                progress(f"{point.experiments} created in {time.monotonic() - started:.0f}s ({backend.label})")
                warm_up(port, point.experiments, time.monotonic() + 2 * point.interval_s + 30)
                progress(f"warm-up done after {time.monotonic() - started:.0f}s; measuring {config.window_s}s")
                load_before = os.getloadavg()
                plane = control_plane_pids(folder / "kubeconfig")
                requests0 = experiment_requests(api)
                plane0 = sum(cpu_seconds(pid) for pid in plane)
                results0 = ticks_by_result(port)
                cpu0, ticks0, queries0, t0 = cpu_seconds(child.pid), histogram(port), 0.0, time.monotonic()
                queries0 = prometheus_queries(prometheus)
                worst, late, median = 0.0, 0, 0.0
                gap = point.interval_s / point.samples_per_interval
                for sample in range(point.windows * point.samples_per_interval):
                    time.sleep(max(0.0, t0 + (sample + 1) * gap - time.monotonic()))
                    tally, ages = survey(api)
                    worst = max(worst, ages[-1])
                    late = max(late, sum(age > point.deadline_s for age in ages))
                    median = ages[len(ages) // 2]
                    progress(f"sample {sample + 1}: max since last analysis {ages[-1]:.1f}s, {late} late, {tally}")
                elapsed = time.monotonic() - t0
                cpu = cpu_seconds(child.pid) - cpu0
                plane_cpu = sum(cpu_seconds(pid) for pid in plane) - plane0
                requests = {k: v - requests0[k] for k, v in experiment_requests(api).items()}
                ticks = histogram(port).minus(ticks0)
                results = {k: v - results0.get(k, 0.0) for k, v in ticks_by_result(port).items()}
                waiting = never_analysed(api, folder / "operator.log")
                queries = prometheus_queries(prometheus) - queries0
                rss = rss_mb(child.pid)
                load_after = os.getloadavg()
        finally:
            api.close()
            if (folder / "operator.log").exists():  # kept for the next question (gitignored)
                shutil.copy(folder / "operator.log", KEPT_LOG)
    per_tick = max(ticks.count, 1)
    ideal = point.experiments / point.interval_s
    return {
        "experiments": str(point.experiments),
        "interval s": str(point.interval_s),
        "API server": backend.name,
        "window s": f"{elapsed:.0f}",
        "ticks/s": f"{ticks.count / elapsed:.1f}",
        "ideal ticks/s": f"{ideal:.0f}",
        "achieved / ideal": f"{ticks.count / elapsed / ideal:.2f}",
        "CPU ms/tick": f"{cpu * 1000 / per_tick:.2f}",
        "CPU % of a core": f"{cpu / elapsed * 100:.0f}",
        "API server + etcd CPU % of a core": f"{plane_cpu / elapsed * 100:.0f}" if plane else "-",
        "RSS MB": f"{rss:.0f}",
        "RSS MB per 1,000 experiments": f"{(rss - idle_rss) * 1000 / point.experiments:.0f}",
        "reconcile p95 ms": milliseconds(ticks.quantile(0.95), ticks.buckets),
        "queries/tick": f"{queries / per_tick:.1f}",
        "ticks ok / conflict / error": "{ok:.0f} / {conflict:.0f} / {error:.0f}".format(**results),
        "GETs / status writes / refused / failed, per tick": (
            "{get:.2f} / {status:.2f} / {refused:.2f} / {failed:.2f}".format(
                **{k: v / per_tick for k, v in requests.items()}
            )
        ),
        "since last analysis s, median / max": f"{median:.1f} / {worst:.1f}",
        f"analysed within {point.deadline_s:.0f} s": "yes" if worst <= point.deadline_s else f"no ({late} late)",
        "load average, window start / end": f"{load_before[0]:.1f} / {load_after[0]:.1f}",
        "never analysed at the window's end": waiting,
    }


def run(progress: Progress) -> BenchTable:
    started = time.monotonic()
    rows: list[dict[str, str]] = []
    with scraped_exporter(VARIANTS, seed=5, **LOAD) as (_, prometheus), tempfile.TemporaryDirectory() as tmp:
        for point in POINTS:
            progress(f"{point.experiments} experiments at {point.interval_s}s")
            rows.append(measure(point, prometheus, pathlib.Path(tmp), progress))
            progress(f"done: {rows[-1]}")
    return BenchTable(
        title="Capacity of one operator replica (real API server, real Prometheus)",
        columns=list(rows[0]),
        rows=[list(row.values()) for row in rows],
        notes=(
            "Each experiment: an A/B test of two equal models that stays Progressing (3 grouped Prometheus "
            "queries and one status PATCH per tick); ideal ticks/s = experiments / interval.",
            "Target (issue 14): every experiment analysed within interval + 10 %. 'since last analysis' is now "
            "minus status.lastAnalysisAt over all experiments, sampled "
            f"{POINTS[0].samples_per_interval} times per interval in the window; the max is the largest seen.",
            "GETs / status writes / refused / failed: kube-apiserver's apiserver_request_total for ModelExperiments "
            "over the window, per tick; a tick decides on the watch's copy of its experiment (a GET only when the "
            "watch has not yet shown its last status write), refused = status writes the resourceVersion guard "
            "refused, failed = 429/5xx (504 also when the operator's 10 s client timeout gave up first). Ticks "
            "ok / conflict / error: the operator's own count per result (mlrollouts_reconcile_duration_seconds); "
            "an error tick is retried after 5 s, doubling up to the interval (controller/retries.py).",
            f"The operator's log is kept in {KEPT_LOG.relative_to(RESULTS.parent.parent)} (not committed).",
            "CPU from /proc/PID/stat of the operator alone; RSS per 1,000 experiments = (RSS with the experiments "
            "- RSS idle) × 1,000 / experiments.",
            "The machine (2 cores) is shared with other work: the load average (1 min) at the window's start and "
            "end is in the table; CPU ms/tick is the figure such load moves least.",
            "Before the async Kubernetes transport, the watch-body tick and the slim kopf storages (same benchmark, "
            "2026-12-02 03:49-03:58 UTC, load average 22-24): 3.9 ticks/s of 50 (0.08), 35.96 operator CPU ms per "
            "tick, 14 % of a core, RSS 530 MB (125 MB per 1,000 experiments), reconcile p95 > 10 s, 1,781 of "
            "3,000 experiments never analysed by the window's end.",
            "On a 2-core machine at a load average above 20, any one process gets a fraction of a core: an operator "
            "using 15 % of a core and an API server using 30 % are then starved, not saturated, and ticks/s measures "
            "the machine. The CPU figures say what a quiet machine would do: at N ms of operator CPU per tick, "
            "50 ticks/s need 50 × N ms of CPU per second.",
            "Measurements by hand (same-load A/B runs, reproductions) and the arithmetic against the target: "
            "capacity-history.md, which this benchmark does not write.",
            f"Whole run {time.monotonic() - started:.0f}s.",
        ),
    )

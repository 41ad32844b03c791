"""Gateway overhead: added latency over a direct call and throughput at 32 in flight, side by side with
nginx doing the same sticky split (`split_clients` on x-user-id), in one run.

Every server is its own process on a loopback port and wrk (compiled) drives them, so the load generator
neither shares a GIL with what it measures nor caps it: a row for nginx answering by itself shows what wrk
can drive at most. The machine is shared: targets alternate within each round and every figure is the
median over rounds, with its spread (min–max). `make bench` installs nginx and wrk (Debian's packages).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.gateway_targets import (
    TIMEOUT_SECONDS,
    WRK_SCRIPT,
    WrkRun,
    binary,
    cpu_seconds,
    free_port,
    gateway_command,
    model_command,
    nginx_command,
    nginx_conf,
    process,
    wrk,
)
from benchmarks.harness import BenchTable, Progress

ROUNDS = int(os.environ.get("BENCH_GATEWAY_ROUNDS", "5"))
LATENCY_SECONDS = 2  # one connection, one request at a time
THROUGHPUT_SECONDS = 3
CONCURRENCY = 32
WARMUP_SECONDS = 1
NGINX = "nginx split_clients"
CEILING = "nginx answering itself"
COLUMNS = [
    "target",
    "p50 ms",
    "p99 ms",
    "added p50 / p99 ms",
    f"req/s at {CONCURRENCY} in flight",
    "req/s vs direct",
    "CPU µs/request",
]
Runs = dict[str, list[tuple[WrkRun, WrkRun, float]]]  # per target: (sequential, concurrent, CPU µs/request)


def run(progress: Progress) -> BenchTable:
    wrk_binary, nginx = binary("wrk"), binary("nginx")
    if wrk_binary is None:
        return BenchTable(
            title="Gateway overhead vs a direct call and nginx (skipped)",
            columns=["skipped"],
            rows=[["wrk not found: `make bench` installs Debian's wrk with apt-get; install it and rerun"]],
        )
    model_port, gateway_port, nginx_port, ceiling_port = free_port(), free_port(), free_port(), free_port()
    model = f"http://127.0.0.1:{model_port}"
    targets = {"direct": f"{model}/predict", "gateway": f"http://127.0.0.1:{gateway_port}/predict"}
    notes = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        script = scratch / "post.lua"
        script.write_text(WRK_SCRIPT)
        split = scratch / "split.json"
        split.write_text(json.dumps({"a": 50, "b": 50}))
        gateway = gateway_command(gateway_port, free_port(), model, split)
        prefix = scratch / "nginx"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / kind).mkdir(parents=True)
        (prefix / "nginx.conf").write_text(nginx_conf(prefix, nginx_port, model_port, ceiling_port))
        with (
            process(model_command(model_port), targets["direct"]) as model_pid,
            process(gateway, f"http://127.0.0.1:{gateway_port}/readyz") as gateway_pid,
        ):
            pids = {"direct": model_pid, "gateway": gateway_pid}
            if nginx is None:
                notes.append("nginx skipped: not installed (`make bench` installs Debian's nginx with apt-get).")
                runs = measure(wrk_binary, script, targets, pids, progress)
            else:
                targets |= {NGINX: f"http://127.0.0.1:{nginx_port}/predict"}
                targets |= {CEILING: f"http://127.0.0.1:{ceiling_port}/predict"}
                with process(nginx_command(nginx, prefix), f"http://127.0.0.1:{nginx_port}/ready") as nginx_pid:
                    pids |= {NGINX: nginx_pid, CEILING: nginx_pid}
                    runs = measure(wrk_binary, script, targets, pids, progress)
    return table(runs, notes, load_before, os.getloadavg()[0])


def measure(wrk_binary: str, script: Path, targets: dict[str, str], pids: dict[str, int], progress: Progress) -> Runs:
    """wrk runs per target and round, the order alternating between rounds, and the CPU the target's own
    process (the model for "direct", else the proxy) spent per request of the concurrent run."""
    runs: Runs = {name: [] for name in targets}
    for url in targets.values():
        wrk(wrk_binary, script, url, CONCURRENCY, WARMUP_SECONDS)
    for round_number in range(ROUNDS):
        order = list(targets) if round_number % 2 == 0 else list(reversed(targets))
        for name in order:
            progress(f"round {round_number + 1}/{ROUNDS}: {name}")
            sequential = wrk(wrk_binary, script, targets[name], 1, LATENCY_SECONDS)
            cpu_before = cpu_seconds(pids[name])
            concurrent = wrk(wrk_binary, script, targets[name], CONCURRENCY, THROUGHPUT_SECONDS)
            cpu = (cpu_seconds(pids[name]) - cpu_before) / max(concurrent.requests, 1) * 1e6
            if sequential.errors or concurrent.errors:  # timeouts are reported, failures stop the run
                raise RuntimeError(f"{name}: {sequential.errors + concurrent.errors} failed requests")
            runs[name].append((sequential, concurrent, cpu))
    return runs


def spread(values: list[float], digits: int) -> str:
    """Median (min–max) over rounds."""
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def table(runs: Runs, notes: list[str], load_before: float, load_after: float) -> BenchTable:
    direct = runs["direct"]
    rows, summary = [], {}
    for name, triples in runs.items():
        # paired by round: each target against the direct call measured seconds before or after it
        paired = list(zip(triples, direct, strict=True))
        added_p50 = [seq.p50_ms - base[0].p50_ms for (seq, _, _), base in paired]
        added_p99 = [seq.p99_ms - base[0].p99_ms for (seq, _, _), base in paired]
        ratio = [run.rate / base[1].rate for (_, run, _), base in paired]
        cpu = [cpu for _, _, cpu in triples]
        medians = [statistics.median(values) for values in (added_p50, added_p99, ratio, cpu)]
        summary[name] = medians
        rows.append(
            [
                name,
                spread([seq.p50_ms for seq, _, _ in triples], 2),
                spread([seq.p99_ms for seq, _, _ in triples], 2),
                "—" if name == "direct" else f"{spread(added_p50, 2)} / {spread(added_p99, 2)}",
                spread([run.rate for _, run, _ in triples], 0),
                "—" if name == "direct" else f"{medians[2]:.0%} ({min(ratio):.0%}–{max(ratio):.0%})",
                spread(cpu, 0),
            ]
        )
    timeouts = {name: sum(seq.timeouts + run.timeouts for seq, run, _ in runs[name]) for name in runs}
    late = ", ".join(f"{name} {count}" for name, count in timeouts.items() if count)
    if late:
        notes = [f"Requests unanswered within {TIMEOUT_SECONDS} s (wrk timeouts, not in latencies): {late}.", *notes]
    gateway = summary["gateway"]
    met_p99, met_rate = ("met" if ok else "NOT met" for ok in (gateway[1] <= 1, gateway[2] >= 0.8))
    verdict = [
        f"Gateway: {gateway[1]:+.2f} ms p99 over a direct call (target ≤ 1 ms: {met_p99}), "
        f"{gateway[2]:.0%} of the direct throughput (target ≥ 80 %: {met_rate})."
    ]
    if NGINX in summary:
        nginx = summary[NGINX]
        verdict.append(
            f"nginx: {nginx[1]:+.2f} ms p99, {nginx[2]:.0%} of direct. The gateway adds {gateway[0] - nginx[0]:+.2f} "
            f"ms p50 / {gateway[1] - nginx[1]:+.2f} ms p99 over nginx, serves {gateway[2] / nginx[2]:.0%} of its "
            f"throughput and spends {gateway[3]:,.0f} µs of CPU per request where nginx spends {nginx[3]:,.0f} "
            f"({gateway[3] / max(nginx[3], 1):.0f}x) and the model itself {summary['direct'][3]:,.0f}."
        )
    return BenchTable(
        title="Gateway overhead vs a direct call and nginx split_clients (medians over rounds, min–max)",
        columns=COLUMNS,
        rows=rows,
        notes=[
            *verdict,
            *notes,
            f"wrk (one thread): latency with 1 connection for {LATENCY_SECONDS} s, throughput with {CONCURRENCY} "
            f"connections for {THROUGHPUT_SECONDS} s, per target per round; {ROUNDS} rounds with the order "
            "alternating; each cell is the median over rounds (min–max). Added latency and the throughput ratio "
            "are paired with the direct call of the same round. Every POST carries a new x-user-id.",
            "Loopback, one model process (uvicorn), one gateway process, one nginx worker with keep-alive pools "
            f"to the model. '{CEILING}' is nginx returning the body itself: the most wrk drives here, so the "
            "load generator is not what limits the other rows.",
            "The machine (2 CPUs) is shared with other engineers' jobs, and wrk, the model and the proxy share "
            f"it too: absolute figures move between runs, ratios less. 1-minute load average {load_before:.1f} "
            f"before and {load_after:.1f} after the run. CPU µs/request (user + system time of the target's own "
            "process over the concurrent run, from /proc: the model's for 'direct', the proxy's otherwise) is "
            "the figure that load moves least.",
        ],
    )

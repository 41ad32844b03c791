"""Same-load A/B of the operator's CPU per experiment-tick between source trees (not part of `make bench`).

    python -m benchmarks.ab_ticks BASE_TREE [CANDIDATE_TREE] [--rounds 3] [--experiments 300] [--interval 10]
        [--window 40] [--profile DIR] [--rate 50] [--replicas 1]

One real kube-apiserver + etcd, one Prometheus scraping the exporter and one set of experiments (the capacity
benchmark's A/B test that stays Progressing) for the whole run; the operators of the trees take turns on them,
one at a time, interleaved (A B A B ...), so that both see the same objects and, as far as a shared machine
allows, the same load. Each turn: a fresh `mlrollouts run --standalone` with PYTHONPATH=TREE/operator (the
tree's mlrollouts, this venv's dependencies), a warm-up until it ticked every experiment twice, then a window
in which its CPU (/proc utime+stime) and ticks (its reconcile histogram) are measured. A tree left out is this
checkout. `--profile DIR` records each window with py-spy (`pip install py-spy` into this venv first) into DIR.
`--replicas N` (N > 1): each turn runs N active-active replicas (`--shards 16`, as bench_scaling) instead of one
standalone operator, and the CPU and ticks are summed over them (the window starts once every shard is held).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import kubernetes

from benchmarks.bench_capacity import control_plane_pids, experiment_requests
from benchmarks.bench_operator import (
    LOAD,
    VARIANTS,
    Config,
    cpu_seconds,
    create_all,
    operator_process,
    reconcile_histogram,
)
from benchmarks.bench_scaling import SHARDS, histogram_sum, spread
from benchmarks.harness import api_server, scraped_exporter, stopped_by_signals
from mlrollouts.localstack.replicas import Replica, wait_until

HERE = pathlib.Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def pythonpath(tree: pathlib.Path) -> Iterator[None]:
    """Children started inside import mlrollouts from `tree` (PYTHONPATH comes before the venv's own copy)."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree / "operator")
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = previous


def requests_of(api: kubernetes.client.ApiClient, plane: list[int]) -> dict[str, float]:
    """kube-apiserver's request counts; the emulator (no pids, no /metrics) counts nothing."""
    return experiment_requests(api) if plane else {"get": 0.0, "status": 0.0, "refused": 0.0}


@contextlib.contextmanager
def operators(
    count: int, label: str, tree: pathlib.Path, kubeconfig: pathlib.Path, folder: pathlib.Path
) -> Iterator[list[tuple[int, int]]]:
    """(pid, metrics port) of one standalone operator, or of `count` active-active replicas once every shard is
    held; all of `tree`'s code. Stopped (SIGTERM: the Leases freed for the next turn) at the end."""
    if count == 1:
        with pythonpath(tree), operator_process(kubeconfig, folder / f"operator-{label}.log") as (child, port):
            yield [(child.pid, port)]
        return
    replicas: list[Replica] = []
    try:
        with pythonpath(tree):
            for i in range(count):
                replicas.append(
                    Replica(f"replica-{i}", kubeconfig, folder / f"{label}-replica-{i}.log", SHARDS).start()
                )
        wait_until(lambda: spread(replicas), 120, "every shard held, each replica holding some", 1.0)
        yield [(replica.process.pid, replica.metrics_port) for replica in replicas if replica.process is not None]
    finally:
        for replica in replicas:
            replica.stop()


def ticks_of(children: list[tuple[int, int]]) -> float:
    return sum(reconcile_histogram(port).count for _, port in children)


def turn(
    label: str, tree: pathlib.Path, kubeconfig: pathlib.Path, folder: pathlib.Path, args: argparse.Namespace
) -> str:
    with contextlib.ExitStack() as stack:
        children = stack.enter_context(operators(args.replicas, label, tree, kubeconfig, folder))
        started = ticks_of(children)
        deadline = time.monotonic() + 6 * args.interval + 60
        while time.monotonic() < deadline and ticks_of(children) - started < 2 * args.experiments:
            time.sleep(1)
        plane = control_plane_pids(kubeconfig)
        api = stack.enter_context(
            contextlib.closing(kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))
        )
        load0, requests0 = os.getloadavg()[0], requests_of(api, plane)
        pids = [pid for pid, _ in children]
        cpu0, plane0, ticks0, t0 = (
            sum(map(cpu_seconds, pids)),
            sum(map(cpu_seconds, plane)),
            [reconcile_histogram(port) for _, port in children],
            time.monotonic(),
        )
        spy = None
        if args.profile:
            out = pathlib.Path(args.profile) / f"{label}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            command = [
                str(pathlib.Path(sys.executable).parent / "py-spy"),
                "record",
                "-p",
                str(pids[0]),
                "-d",
                str(int(args.window)),
                "-f",
                "raw",
                "-r",
                str(args.rate),
                "--nonblocking",
            ]
            spy = subprocess.Popen([*command, "-o", str(out)], stdout=subprocess.DEVNULL)
        time.sleep(args.window)
        elapsed = time.monotonic() - t0
        cpu = sum(map(cpu_seconds, pids)) - cpu0
        ticks = histogram_sum(
            [reconcile_histogram(port).minus(t) for (_, port), t in zip(children, ticks0, strict=True)]
        )
        plane_cpu = sum(map(cpu_seconds, plane)) - plane0
        requests = {k: v - requests0[k] for k, v in requests_of(api, plane).items()}
        load1 = os.getloadavg()[0]
        if spy is not None:
            spy.wait(60)
    n = max(ticks.count, 1)
    return (
        f"{label}: {ticks.count / elapsed:.1f} ticks/s, operator {cpu * 1000 / n:.2f} ms/tick, "
        f"API server + etcd {plane_cpu * 1000 / n:.2f} ms/tick, p95 {ticks.quantile(0.95) * 1000:.0f} ms, "
        f"status writes {requests['status'] / n:.2f} refused {requests['refused'] / n:.2f} "
        f"GETs {requests['get'] / n:.2f} per tick, load {load0:.1f}/{load1:.1f}, replicas {args.replicas}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="+", type=pathlib.Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--experiments", type=int, default=300)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--window", type=float, default=40.0)
    parser.add_argument("--profile", default="")
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second with --profile")
    parser.add_argument("--replicas", type=int, default=1, help="active-active replicas per turn (1: standalone)")
    args = parser.parse_args()
    if args.profile and not (pathlib.Path(sys.executable).parent / "py-spy").exists():
        parser.error(f"--profile needs py-spy in this venv: {sys.executable} -m pip install py-spy")
    trees = [tree.resolve() for tree in args.trees] + ([HERE] if len(args.trees) == 1 else [])
    config = Config(args.experiments, "gateway", args.interval, args.window, 0)
    with stopped_by_signals(), tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        with scraped_exporter(VARIANTS, seed=5, **LOAD) as (_, prometheus), api_server(folder) as backend:
            print(f"API server: {backend.label}; trees: {', '.join(map(str, trees))}", flush=True)
            api = kubernetes.config.new_client_from_config(config_file=str(backend.kubeconfig))
            create_all(api, config, prometheus.address)
            api.close()
            for round_ in range(args.rounds):
                for index, tree in enumerate(trees):
                    label = f"{'AB'[index] if len(trees) == 2 else index}{round_ + 1}"
                    print(turn(label, tree, backend.kubeconfig, folder, args), flush=True)


if __name__ == "__main__":
    main()

"""Gateway overhead: added latency over a direct call, and throughput at fixed concurrency, beside a naive
router that opens a new HTTP client per request (the article's shape).

Each server (model, gateway, naive router) is its own process on a loopback port, so the load generator
does not share a GIL with what it measures. Bounded: a few thousand requests per target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

from benchmarks.harness import BenchTable, Progress

LATENCY_REQUESTS = 800
THROUGHPUT_REQUESTS = 2000
CONCURRENCY = 32
WARMUP = 50
ROUNDS = 2  # targets alternate within each round, so a burst of load elsewhere hits all of them alike


def model_app():  # runs in the model-server subprocess
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request):
        await request.body()
        return JSONResponse({"prediction": 0.42}, headers={"x-model-version": "bench-1"})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def naive_app(upstreams: list[str]):  # runs in the naive-router subprocess
    import hashlib

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request: Request):
        payload = await request.json()
        user = request.headers.get("x-user-id", "")
        index = int(hashlib.md5(user.encode()).hexdigest(), 16) % len(upstreams)
        async with httpx.AsyncClient() as client:  # the article's pattern: a new client per request
            response = await client.post(f"{upstreams[index]}/predict", json=payload)
        return JSONResponse(response.json())

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def process(command: list[str], ready_url: str) -> Iterator[None]:
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited: {child.communicate()[1][-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(ready_url, timeout=1).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} not ready in 20 s")
            time.sleep(0.1)
        yield
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def serve_command(role: str, port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_gateway", role, str(port), *args]


async def measure(url: str, requests: int, concurrency: int) -> tuple[np.ndarray, float]:
    """Per-request latencies (s) and throughput (req/s) of `requests` POSTs with `concurrency` in flight."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for index in range(WARMUP):
            await client.post(url, json={"x": index}, headers={"x-user-id": f"warm-{index}"})
        latencies: list[float] = []
        counter = iter(range(requests))

        async def worker() -> None:
            for index in counter:
                started = time.perf_counter()
                response = await client.post(url, json={"x": index}, headers={"x-user-id": f"user-{index}"})
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return np.array(latencies), requests / elapsed


def run(progress: Progress) -> BenchTable:
    model_port, gateway_port, naive_port = free_port(), free_port(), free_port()
    model = f"http://127.0.0.1:{model_port}"
    targets = {
        "direct": f"{model}/predict",
        "gateway": f"http://127.0.0.1:{gateway_port}/predict",
        "naive router": f"http://127.0.0.1:{naive_port}/predict",
    }
    latencies: dict[str, list[np.ndarray]] = {name: [] for name in targets}
    busy_seconds: dict[str, float] = dict.fromkeys(targets, 0.0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        split = Path(scratch) / "split.json"
        split.write_text(json.dumps({"a": 50, "b": 50}))
        entry = "import sys; from mlrollouts.cli.main import main; sys.exit(main())"
        gateway = [sys.executable, "-c", entry, "gateway", "--port", str(gateway_port), "--log-level", "warning"]
        gateway += ["--metrics-port", str(free_port())]
        gateway += ["--experiment", "bench", "--upstream", f"a={model}", "--upstream", f"b={model}"]
        gateway += ["--split-file", str(split)]
        with (
            process(serve_command("model", model_port), f"{model}/predict"),
            process(gateway, f"http://127.0.0.1:{gateway_port}/readyz"),
            process(serve_command("naive", naive_port, model, model), targets["naive router"]),
        ):
            for round_number in range(ROUNDS):
                order = list(targets) if round_number % 2 == 0 else list(reversed(targets))
                for name in order:
                    progress(f"round {round_number + 1}/{ROUNDS}: {name}")
                    sequential, _ = asyncio.run(measure(targets[name], LATENCY_REQUESTS // ROUNDS, 1))
                    latencies[name].append(sequential)
                    share = THROUGHPUT_REQUESTS // ROUNDS
                    _, throughput = asyncio.run(measure(targets[name], share, CONCURRENCY))
                    busy_seconds[name] += share / throughput
    results = {
        name: (np.concatenate(latencies[name]), THROUGHPUT_REQUESTS // ROUNDS * ROUNDS / busy_seconds[name])
        for name in targets
    }
    return table(results, load_before, os.getloadavg()[0])


def table(results: dict[str, tuple[np.ndarray, float]], load_before: float, load_after: float) -> BenchTable:
    direct_p50, direct_p99 = np.percentile(results["direct"][0], [50, 99]) * 1000
    rows = []
    for name, (latencies, throughput) in results.items():
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        added = "—" if name == "direct" else f"+{p50 - direct_p50:.2f} / +{p99 - direct_p99:.2f}"
        rows.append([name, f"{p50:.2f}", f"{p99:.2f}", added, f"{throughput:,.0f}"])
    gateway, naive = results["gateway"], results["naive router"]
    p50_ratio = (np.median(naive[0]) - np.median(results["direct"][0])) / max(
        np.median(gateway[0]) - np.median(results["direct"][0]), 1e-9
    )
    return BenchTable(
        title="Gateway overhead vs a direct call and a client-per-request router",
        columns=["target", "p50 ms", "p99 ms", "added p50 / p99 ms", f"req/s at {CONCURRENCY} in flight"],
        rows=rows,
        notes=[
            f"Latency: {LATENCY_REQUESTS} sequential POSTs per target; throughput: {THROUGHPUT_REQUESTS} POSTs "
            f"with {CONCURRENCY} in flight; {ROUNDS} interleaved rounds, {WARMUP} warm-up requests before each "
            "measurement. Loopback, one model process, one gateway process.",
            f"The naive router adds {p50_ratio:.1f}x the gateway's added p50 latency; the gateway serves "
            f"{gateway[1] / naive[1]:.1f}x the naive router's throughput.",
            "The load generator, gateway and model share the machine's CPUs, so throughput is a lower bound; "
            f"1-minute load average {load_before:.1f} before and {load_after:.1f} after the run.",
        ],
    )


if __name__ == "__main__":
    import uvicorn

    role, port = sys.argv[1], int(sys.argv[2])
    app = model_app() if role == "model" else naive_app(sys.argv[3:])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)

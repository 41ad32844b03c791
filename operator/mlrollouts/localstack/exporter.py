"""A steerable per-variant model-metrics exporter: "better, worse, slow, silent" models for tests and demos.

    python -m mlrollouts.localstack.exporter --port 9101 --variant churn-v2 --variant churn-v3 --seed 7

A background simulator generates requests for every variant (Poisson arrivals at `rate` per second, in
ticks of --tick seconds) and exports, per variant:
  model_outcomes_total{variant,outcome="success"|"failure"}   one outcome per non-error request
  ab_test_requests_total{variant}, ab_test_errors_total{variant}
  ab_test_latency_seconds{variant}  histogram (lognormal around `latency`, spread `latency_spread`)
  model_outcome_value{variant}  summary (_count, _sum) and model_outcome_value_squares_total, for mean metrics
    (values ~ Normal(`value_mean`, `value_sd`)).
  istio_requests_total, istio_request_duration_milliseconds  the same requests as Istio's standard metrics
    (istio_series.py), for the chart's Istio metric templates.
Steer a variant while it runs: `POST /control {"variant": "churn-v3", "rate": 50, "success": 0.78,
"latency": 0.05, "error_rate": 0.0, "silent": false}` (any subset of the fields). rate 0 freezes the
counters; silent drops the variant's series from /metrics (as a crashed model would). `GET /state` returns
every variant's settings and exact totals. Deterministic for a seed and a given sequence of ticks: each
variant draws from its own generator seeded from (seed, variant). SIGTERM or SIGINT stops it cleanly.
`ExporterProcess` runs it as a child process for tests (`.target` for Prometheus, `.control(...)`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric, SummaryMetricFamily

from mlrollouts.localstack.istio_series import istio_metrics

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Behaviour:
    """What a variant does; every field can be changed over POST /control."""

    rate: float = 20.0
    success: float = 0.5
    latency: float = 0.05
    latency_spread: float = 0.3
    error_rate: float = 0.0
    value_mean: float = 10.0
    value_sd: float = 2.0
    silent: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a /control body; ValueError names the field and the accepted range."""
        for name, value in changes.items():
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{name}: must be true or false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name}: must be a number, got {value!r}")
            elif value < 0 or (name in ("success", "error_rate") and value > 1):
                raise ValueError(f"{name}: must be {'in [0, 1]' if name in ('success', 'error_rate') else '>= 0'}")
            setattr(self, name, type(current)(value))


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    successes: int = 0
    failures: int = 0
    value_count: int = 0
    value_sum: float = 0.0
    value_squares: float = 0.0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))


class Simulator:
    """The variants' state; `advance` is one tick, the collector reads a consistent snapshot under the lock."""

    def __init__(self, variants: list[str], seed: int) -> None:
        self.behaviour = {v: Behaviour() for v in variants}
        self.totals = {v: Totals() for v in variants}
        self._random = {v: random.Random(f"{seed}:{v}") for v in variants}
        self.lock = threading.Lock()

    def control(self, body: dict[str, Any]) -> dict[str, Any]:
        variant = body.get("variant")
        if variant not in self.behaviour:
            raise ValueError(f"variant: unknown {variant!r}; known: {', '.join(self.behaviour)}")
        changes = {k: v for k, v in body.items() if k != "variant"}
        unknown = sorted(set(changes) - {f.name for f in fields(Behaviour)})
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: {[f.name for f in fields(Behaviour)]}")
        with self.lock:
            behaviour = Behaviour(**asdict(self.behaviour[variant]))
            behaviour.update(changes)
            self.behaviour[variant] = behaviour
            return asdict(behaviour)

    def advance(self, seconds: float) -> None:
        with self.lock:
            for variant, behaviour in self.behaviour.items():
                if behaviour.silent or behaviour.rate <= 0:
                    continue
                rng, totals = self._random[variant], self.totals[variant]
                for _ in range(_poisson(rng, behaviour.rate * seconds)):
                    self._request(rng, behaviour, totals)

    @staticmethod
    def _request(rng: random.Random, behaviour: Behaviour, totals: Totals) -> None:
        totals.requests += 1
        latency = behaviour.latency * math.exp(rng.gauss(0.0, behaviour.latency_spread))
        totals.latency_count += 1
        totals.latency_sum += latency
        for i, bound in enumerate(LATENCY_BUCKETS):
            if latency <= bound:
                totals.latency_buckets[i] += 1
        if rng.random() < behaviour.error_rate:
            totals.errors += 1
            return
        if rng.random() < behaviour.success:
            totals.successes += 1
        else:
            totals.failures += 1
        value = rng.gauss(behaviour.value_mean, behaviour.value_sd)
        totals.value_count += 1
        totals.value_sum += value
        totals.value_squares += value * value

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                v: {"behaviour": asdict(self.behaviour[v]), "totals": asdict(self.totals[v])} for v in self.behaviour
            }

    def collect(self) -> Iterator[Metric]:
        outcomes = CounterMetricFamily("model_outcomes", "Model outcomes by variant.", labels=["variant", "outcome"])
        requests = CounterMetricFamily("ab_test_requests", "Requests served.", labels=["variant"])
        errors = CounterMetricFamily("ab_test_errors", "Requests that failed.", labels=["variant"])
        latency = HistogramMetricFamily("ab_test_latency_seconds", "Request latency.", labels=["variant"])
        values = SummaryMetricFamily("model_outcome_value", "Per-request outcome value.", labels=["variant"])
        live: list[tuple[str, Totals]] = []
        squares = CounterMetricFamily("model_outcome_value_squares", "Sum of squared values.", labels=["variant"])
        with self.lock:
            for variant, totals in self.totals.items():
                if self.behaviour[variant].silent:
                    continue
                outcomes.add_metric([variant, "success"], totals.successes)
                outcomes.add_metric([variant, "failure"], totals.failures)
                requests.add_metric([variant], totals.requests)
                errors.add_metric([variant], totals.errors)
                buckets = [(repr(b), c) for b, c in zip(LATENCY_BUCKETS, totals.latency_buckets, strict=True)]
                latency.add_metric([variant], [*buckets, ("+Inf", totals.latency_count)], totals.latency_sum)
                values.add_metric([variant], totals.value_count, totals.value_sum)
                squares.add_metric([variant], totals.value_squares)
                live.append((variant, Totals(**asdict(totals))))
        yield from (outcomes, requests, errors, latency, values, squares)
        yield from istio_metrics(live, LATENCY_BUCKETS)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a rounded normal approximation above 30 (ticks are short)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def make_server(simulator: Simulator, host: str, port: int) -> ThreadingHTTPServer:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(simulator)  # type: ignore[arg-type]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self._send(200, generate_latest(registry), "text/plain; version=0.0.4")
            elif self.path == "/state":
                self._json(200, simulator.state())
            elif self.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            else:
                self._json(404, {"error": "use /metrics, /state, /healthz or POST /control"})

        def do_POST(self) -> None:
            if self.path != "/control":
                self._json(404, {"error": "POST /control only"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                self._json(200, simulator.control(body))
            except ValueError as error:
                self._json(400, {"error": str(error)})

        def _json(self, status: int, document: Any) -> None:
            self._send(status, json.dumps(document).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("exporter_request %s", format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def run(host: str, port: int, variants: list[str], seed: int, tick: float) -> None:
    simulator = Simulator(variants, seed)
    server = make_server(simulator, host, port)
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def simulate() -> None:
        while not stopping.wait(tick):
            simulator.advance(tick)

    threading.Thread(target=simulate, name="simulator", daemon=True).start()
    log.info("exporter_started address=%s:%d variants=%s seed=%d", host, server.server_address[1], variants, seed)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        stopping.set()
        server.server_close()
        log.info("exporter_stopped")


class ExporterProcess:
    """The exporter as a child process on a free loopback port; a context manager that always stops it."""

    def __init__(self, variants: list[str], seed: int = 1, tick: float = 0.1) -> None:
        self.variants, self.seed, self.tick = variants, seed, tick
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}"

    def start(self, timeout_s: float = 10.0) -> ExporterProcess:
        """Ready once the child itself listens on its port and answers; started again on a new port when it exited
        first (a port taken between the pick and its bind: localstack/ports.py)."""
        from mlrollouts.localstack import ports

        for _ in range(ports.PORT_ATTEMPTS):
            self.port = ports.free_port()
            command = [sys.executable, "-m", __name__, "--port", str(self.port), "--seed", str(self.seed)]
            command += ["--tick", str(self.tick), *(arg for v in self.variants for arg in ("--variant", v))]
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    owned = ports.owns_listener(self.process.pid, self.port)
                    if owned and httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            if self.process.poll() is None:
                break  # alive but not serving: not a lost port
        self.stop()
        raise RuntimeError(f"metrics exporter on port {self.port} did not start within {timeout_s:g}s")

    def control(self, variant: str, **changes: float | bool) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/control", json={"variant": variant, **changes}, timeout=5.0)
        if response.status_code != 200:
            raise ValueError(response.json()["error"])
        return response.json()

    def state(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/state", timeout=5.0).json()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)

    def __enter__(self) -> ExporterProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mlrollouts.localstack.exporter", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--variant", action="append", required=True, help="repeat for each variant")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tick", type=float, default=0.1, help="simulation step in seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run(args.host, args.port, args.variant, args.seed, args.tick)


if __name__ == "__main__":
    main()

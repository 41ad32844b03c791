"""Breach → rollback: how long from a challenger starting to fail until the route and the status say champion.

Each trial: a canary (istio VirtualService, challenger at 20 %) whose `type: ratio` error guardrail is healthy;
at a known instant the challenger's simulated model starts failing half of its requests (the exporter's control
endpoint, as a model server gone bad); measured are the seconds until the VirtualService's weights are back to
the champion and until status.phase is RolledBack, and the challenger requests served in between (the traffic
the sequential test had to see). Real operator (`mlrollouts run`), real Prometheus (1 s scrape), the real
kube-apiserver + etcd when built (else the emulator, named in the title); lanes of independent experiments run
side by side to keep the run to a few minutes.
"""

from __future__ import annotations

import contextlib
import pathlib
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kubernetes

from benchmarks.bench_operator import GROUP, ISTIO_CRD, PLURAL, VERSION, operator_process, virtual_service
from benchmarks.harness import ApiBackend, BenchTable, Progress, api_server, scraped_exporter
from mlrollouts.localstack.exporter import ExporterProcess
from mlrollouts.stats.guardrail import bound_test

INTERVALS_S = (1, 5)
TRIALS = 20  # per interval
LANES = 5  # experiments running at once, each with its own pair of variants and VirtualService
TOTAL_RATE = 200.0  # requests/s a lane's mesh sends, split by the route's weights
BAD_ERROR_RATE = 0.5
MAX_ERROR_SHARE = 0.05
ALPHA = 0.05  # one bound, one challenger: the guardrail's whole alpha
SCRAPE_S = 1.0
POLL_S = 0.05


@dataclass(frozen=True)
class Trial:
    interval_s: int
    route_s: float  # breach → VirtualService back to the champion
    phase_s: float  # breach → status.phase RolledBack
    challenger_requests: int  # challenger requests served between the breach and the route's change
    established_s: float  # breach → the sequential test, on the exact counts at the source, first says breach
    established_requests: int  # challenger requests since the breach at that instant


def manifest(name: str, champion: str, challenger: str, prometheus: str, interval_s: int) -> dict[str, Any]:
    errors = {
        "name": "errors",
        "type": "ratio",
        "bad": 'sum(ab_test_errors_total{variant="{{variant}}"})',
        "total": 'sum(ab_test_requests_total{variant="{{variant}}"})',
        "max": MAX_ERROR_SHARE,
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelExperiment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "strategy": "canary",
            "champion": {"name": champion, "service": champion},
            "challengers": [{"name": challenger, "service": challenger}],
            "traffic": {"provider": "istio", "istio": {"virtualService": name, "routes": ["predict"]}},
            "canary": {"steps": [20, 100], "stepDuration": "1h", "minSamplesPerStep": 30},
            "analysis": {
                "interval": f"{interval_s}s",
                "prometheus": {"address": prometheus, "timeout": "2s"},
                "primaryMetric": {
                    "name": "retention",
                    "successes": 'sum(model_outcomes_total{variant="{{variant}}",outcome="success"})',
                    "trials": 'sum(model_outcomes_total{variant="{{variant}}"})',
                    "minimumDetectableEffect": 0.1,
                },
                "guardrails": [errors],
                "statistics": {"method": "sequential", "alpha": ALPHA},
            },
            "metricsFailureLimit": 30,
        },
    }


class Lane:
    """One champion/challenger pair: a mesh thread makes their request rates follow the VirtualService."""

    def __init__(self, index: int, objects: Any, exporter: ExporterProcess, prometheus: str) -> None:
        self.champion, self.challenger = f"lane{index}-champion", f"lane{index}-challenger"
        self.objects, self.exporter, self.prometheus = objects, exporter, prometheus
        self.index = index
        self.weights: dict[str, int] = {}
        self.name = ""

    def route_weights(self) -> dict[str, int]:
        vs = self.objects.get_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", self.name
        )
        route = next(r for r in vs["spec"]["http"] if r.get("name") == "predict")
        return {d["destination"]["host"]: d.get("weight", 0) for d in route["route"]}

    def steer(self, weights: dict[str, int]) -> None:
        if weights != self.weights:
            for variant in (self.champion, self.challenger):
                self.exporter.control(variant, rate=TOTAL_RATE * weights.get(variant, 0) / 100)
            self.weights = dict(weights)

    def challenger_counts(self) -> tuple[int, int]:
        """(errors, requests) the challenger has served, exact, from the exporter."""
        totals = self.exporter.state()[self.challenger]["totals"]
        return int(totals["errors"]), int(totals["requests"])

    def trial(self, number: int, interval_s: int) -> Trial:
        self.name = f"lane{self.index}-i{interval_s}-t{number}"
        self.exporter.control(self.challenger, error_rate=0.0)
        self.weights = {}
        self.steer({self.champion: 100})
        vs = virtual_service(self.name, self.champion, self.challenger)
        self.objects.create_namespaced_custom_object("networking.istio.io", "v1", "default", "virtualservices", vs)
        experiment = manifest(self.name, self.champion, self.challenger, self.prometheus, interval_s)
        self.objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, experiment)
        try:
            self._wait(lambda: self.route_weights().get(self.challenger) == 20, 60, "the first canary step")
            step_start = self.challenger_counts()  # the step's counts start about here (the engine's baseline)
            self.steer(self.route_weights())
            time.sleep(2 * interval_s + 2 * SCRAPE_S)  # healthy analyses at 20 %, with traffic in Prometheus
            phase = self._status().get("phase")
            if phase != "Progressing":
                raise RuntimeError(f"{self.name}: phase {phase} before the breach: {self._status()}")
            before = self.challenger_counts()[1]
            self.exporter.control(self.challenger, error_rate=BAD_ERROR_RATE)
            breach = time.monotonic()
            route_s = phase_s = established = None
            requests = established_requests = 0
            deadline = breach + 10 * interval_s + 60
            while (route_s is None or phase_s is None) and time.monotonic() < deadline:
                now = time.monotonic()
                if established is None:
                    bad, total = self.challenger_counts()
                    bad, total = bad - step_start[0], total - step_start[1]
                    if bound_test("max", MAX_ERROR_SHARE, bad, total, alpha=ALPHA).breach:
                        established, established_requests = now - breach, total - (before - step_start[1])
                weights = self.route_weights()
                if route_s is None and weights.get(self.challenger, 0) == 0:
                    route_s = now - breach
                    self.steer(weights)  # the mesh follows: the challenger stops receiving requests
                    requests = self.challenger_counts()[1] - before
                if phase_s is None and self._status().get("phase") == "RolledBack":
                    phase_s = now - breach
                time.sleep(POLL_S)
            if route_s is None or phase_s is None:
                raise RuntimeError(f"{self.name}: no rollback within {deadline - breach:.0f}s: {self._status()}")
            if established is None:  # the operator saw it first (its counts are the scraped ones): no lower bound
                established, established_requests = route_s, requests
            return Trial(interval_s, route_s, phase_s, requests, established, established_requests)
        finally:
            self.exporter.control(self.challenger, error_rate=0.0, rate=0)
            self.objects.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, self.name)

    def _status(self) -> dict[str, Any]:
        return (
            self.objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, self.name).get("status") or {}
        )

    @staticmethod
    def _wait(predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (kubernetes.client.ApiException, StopIteration, KeyError):
                pass
            time.sleep(POLL_S)
        raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(progress: Progress) -> BenchTable:
    started = time.monotonic()
    variants = [f"lane{i}-{role}" for i in range(LANES) for role in ("champion", "challenger")]
    trials: list[Trial] = []
    lock = threading.Lock()
    with (
        scraped_exporter(variants, seed=5, rate=0, success=0.7, latency=0.05, error_rate=0.0) as (exporter, prometheus),
        tempfile.TemporaryDirectory() as tmp,
        api_server(pathlib.Path(tmp), crd_paths=[ISTIO_CRD]) as backend,
        contextlib.closing(kubernetes.config.new_client_from_config(config_file=str(backend.kubeconfig))) as api,
        operator_process(backend.kubeconfig, pathlib.Path(tmp) / "operator.log"),
    ):
        progress(f"API server: {backend.label}")
        objects = kubernetes.client.CustomObjectsApi(api)
        lanes = [Lane(i, objects, exporter, prometheus.address) for i in range(LANES)]
        for interval_s in INTERVALS_S:

            def lane_trials(lane: Lane, interval_s: int = interval_s) -> None:
                for number in range(lane.index, TRIALS, LANES):
                    trial = lane.trial(number, interval_s)
                    with lock:
                        trials.append(trial)
                    progress(
                        f"interval {interval_s}s trial {number}: route {trial.route_s:.2f}s, "
                        f"phase {trial.phase_s:.2f}s, {trial.challenger_requests} challenger requests"
                    )

            with ThreadPoolExecutor(LANES) as pool:
                list(pool.map(lane_trials, lanes))
    return table(trials, time.monotonic() - started, backend)


def table(trials: list[Trial], elapsed_s: float, backend: ApiBackend) -> BenchTable:
    rows = []
    for interval_s in INTERVALS_S:
        mine = [t for t in trials if t.interval_s == interval_s]
        route = [t.route_s for t in mine]
        phase = [t.phase_s for t in mine]
        requests = [float(t.challenger_requests) for t in mine]
        established = [float(t.established_requests) for t in mine]
        after = [t.route_s - t.established_s for t in mine]
        target = interval_s + SCRAPE_S + 1.0
        rows.append(
            [
                str(interval_s),
                str(len(mine)),
                f"{statistics.median(route):.2f}",
                f"{quantile(route, 0.95):.2f}",
                f"{max(route):.2f}",
                f"{statistics.median(phase):.2f}",
                f"{quantile(phase, 0.95):.2f}",
                f"{statistics.median([t.established_s for t in mine]):.2f}",
                f"{statistics.median(established):.0f}",
                f"{quantile(established, 0.95):.0f}",
                f"{statistics.median(requests):.0f}",
                f"{statistics.median(after):.2f}",
                f"{quantile(after, 0.95):.2f}",
                f"{target:.0f}",
                f"{quantile(after, 0.95) / target:.2f}",
            ]
        )
    return BenchTable(
        title=(
            f"Guardrail breach → rollback (real operator, real Prometheus at 1 s scrape, API server: {backend.label})"
        ),
        columns=[
            "interval s",
            "trials",
            "route back p50 s",
            "route back p95 s",
            "route back max s",
            "RolledBack p50 s",
            "RolledBack p95 s",
            "established p50 s",
            "requests to establish p50",
            "requests to establish p95",
            "challenger requests until route back p50",
            "route back after established p50 s",
            "route back after established p95 s",
            "target: interval + scrape + 1 s",
            "p95 after established / target",
        ],
        rows=rows,
        notes=(
            f"Each trial: a canary at its first step (challenger 20 % of {TOTAL_RATE:g} req/s), healthy for two "
            f"intervals; then the challenger's model fails {BAD_ERROR_RATE:.0%} of requests (exporter control "
            f"endpoint). Guardrail `type: ratio`, errors/requests, max {MAX_ERROR_SHARE}, sequential test at "
            "alpha 0.05. Times from that instant, polled every 50 ms.",
            "established: the first instant (polled with the route) at which the engine's own sequential test "
            "(stats.guardrail.bound_test, max bound, alpha as the spec) says breach on the challenger's exact counts "
            "since the step began, read from the exporter: the earliest the breach can be known, before any scrape. "
            "requests to establish: challenger requests since the breach at that instant.",
            "route back after established: route back minus established, what the target bounds; it holds the wait "
            "for the next scrape (1 s) and for the next tick (up to one interval), then the decision and the patch.",
            "challenger requests until route back: what the challenger served from the breach to the route's change.",
            f"{LANES} experiments run side by side (one per lane of variants); {len(trials)} trials in "
            f"{elapsed_s:.0f}s on a shared 2-core machine; the operator, Prometheus, the exporter and the API "
            "server share the CPUs.",
        ),
    )

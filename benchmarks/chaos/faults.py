"""The chaos stack (the end-to-end stack with fault proxies in front of the API server and Prometheus) and the
five fault kinds, planned from a seed so a failing sweep can be replayed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from stack import Stack

from benchmarks.chaos.proxy import FaultProxy
from mlrollouts.api.durations import MIN_INTERVAL_ENV
from mlrollouts.localstack.server import kubeconfig_document, run_apiserver

CHAMPION, CHALLENGER = "churn-v2", "churn-v3"
VARIANTS = [CHAMPION, CHALLENGER]
KINDS = ("operator-sigkill", "apiserver-freeze", "apiserver-restart", "prometheus-freeze", "prometheus-errors")
# Seconds a fault lasts (for a kill: how long the operator stays down before it is started again).
DURATIONS = {
    "operator-sigkill": (0.1, 2.0),
    "apiserver-freeze": (1.0, 6.0),
    "apiserver-restart": (0.5, 4.0),
    "prometheus-freeze": (1.0, 6.0),
    "prometheus-errors": (1.0, 6.0),
}


@dataclass(frozen=True)
class Fault:
    kind: str
    delay_s: float  # wait after the previous point settled: a random moment of the canary
    duration_s: float
    at_route_write: bool = False  # kills only: fire between the route write and the status write

    def describe(self) -> str:
        moment = "at a route write" if self.at_route_write else f"after {self.delay_s:.1f}s"
        return f"{self.kind} {moment} for {self.duration_s:.1f}s"


def plan(seed: int, points: int, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """`points` faults, the kinds balanced and shuffled, moments and durations drawn from `seed`."""
    rng = random.Random(seed)
    chosen = [kinds[i % len(kinds)] for i in range(points)]
    rng.shuffle(chosen)
    faults = []
    for kind in chosen:
        low, high = DURATIONS[kind]
        at_write = kind == "operator-sigkill" and rng.random() < 0.5
        faults.append(Fault(kind, round(rng.uniform(0.0, 4.0), 2), round(rng.uniform(low, high), 2), at_write))
    return faults


class ChaosStack:
    """Emulated API server, real Prometheus, exporter and operator; the operator reaches both servers through
    fault proxies, while the runner's own client and the traffic follower talk to the API server directly
    (so checks keep working during a fault)."""

    def __init__(self, tmp: pathlib.Path) -> None:
        os.environ.setdefault(MIN_INTERVAL_ENV, "1s")  # compressed time, as tests/conftest.py sets it
        self._exit = contextlib.ExitStack()
        try:
            self.apiserver = run_apiserver(0, tmp / "kubeconfig")
            self._exit.callback(self.apiserver.stop)
            self.stack = Stack(self.apiserver, tmp, VARIANTS)
            self._exit.callback(self.stack.close)
            self.stack.install_istio()
            self.api_proxy = FaultProxy(self.apiserver.port).start()
            self._exit.callback(self.api_proxy.stop)
            self.prometheus_proxy = FaultProxy(self.stack.prometheus.port).start()
            self._exit.callback(self.prometheus_proxy.stop)
            kubeconfig = tmp / "operator-kubeconfig"
            kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(self.api_proxy.url)), encoding="utf-8")
            self.stack.operator.kubeconfig = kubeconfig
            self.stack.operator.start()
        except BaseException:
            self._exit.close()
            raise

    @property
    def prometheus_address(self) -> str:
        return self.prometheus_proxy.url

    def close(self) -> None:
        self.api_proxy.set_mode("pass")
        self.prometheus_proxy.set_mode("pass")
        self._exit.close()

    def __enter__(self) -> ChaosStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- faults ----------------------------------------------------------------------------------------
    def inject(self, fault: Fault, name: str) -> tuple[datetime, bool]:
        """Apply the fault, hold it for its duration, undo it. Returns when it was undone (UTC), and whether a
        kill aimed at a route write caught the route ahead of status (else it fired after 8 s of waiting)."""
        caught = False
        if fault.kind == "operator-sigkill":
            if fault.at_route_write:
                caught = self._wait_for_route_ahead_of_status(name, timeout=8.0)
            self.stack.operator.kill()
            time.sleep(fault.duration_s)
            self.stack.operator.start()
        elif fault.kind == "prometheus-freeze":
            process = self.stack.prometheus.process
            assert process is not None
            os.kill(process.pid, signal.SIGSTOP)
            try:
                time.sleep(fault.duration_s)
            finally:
                os.kill(process.pid, signal.SIGCONT)
        else:
            proxy = self.api_proxy if fault.kind.startswith("apiserver") else self.prometheus_proxy
            mode = {"apiserver-freeze": "freeze", "apiserver-restart": "down", "prometheus-errors": "error"}
            proxy.set_mode(mode[fault.kind])  # type: ignore[arg-type]
            try:
                time.sleep(fault.duration_s)
            finally:
                proxy.set_mode("pass")
        return datetime.now(UTC), caught

    def _wait_for_route_ahead_of_status(self, name: str, timeout: float) -> bool:
        """Poll until the route differs from status.weights: the operator has written traffic, not yet status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                weights = self.stack.status(name).get("weights") or {}
                if weights and self.route_weights() != normalised(weights):
                    return True
            time.sleep(0.01)
        return False

    # --- reads -----------------------------------------------------------------------------------------
    def route_weights(self) -> dict[str, int]:
        route = next(r for r in self.stack.virtual_service("churn")["spec"]["http"] if r.get("name") == "predict")
        return normalised({d["destination"]["host"]: d.get("weight", 0) for d in route["route"]})


def normalised(weights: dict[str, Any]) -> dict[str, int]:
    return {variant: int(weights.get(variant) or 0) for variant in VARIANTS}

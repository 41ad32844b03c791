"""Helpers for the operator-surface tests: a peering operator process, a bearer-checking proxy, a line reader
for `kubectl get -w`, and a scrape of the operator's metrics endpoint.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from stack import OperatorProcess

from mlrollouts.localstack.replicas import start_on_free_port


class PeeringOperator(OperatorProcess):
    """`mlrollouts run --peering NAME` (no --standalone): a replica that takes part in kopf peering."""

    def __init__(self, *args: Any, peering: str = "mlrollouts", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peering = peering

    def start(self) -> PeeringOperator:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "MLROLLOUTS_WATCH_TIMEOUT": "30"}
        command = [sys.executable, "-m", "mlrollouts.cli.main", "run", "--peering", self.peering]
        command += ["--namespace", "default", "--liveness-port", "0"]
        self.process, self.metrics_port = start_on_free_port(
            lambda port: [*command, "--metrics-port", str(port)], env, self.log_path
        )
        return self


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """Every sample on the operator's /metrics as (name, labels, value)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def ticks(port: int) -> float:
    """Reconcile ticks the operator has run (the histogram's count over every result); 0 before it serves."""
    try:
        samples = scrape(port)
    except httpx.HTTPError:
        return 0.0
    return sum(v for name, _, v in samples if name == "mlrollouts_reconcile_duration_seconds_count")


class LineReader(threading.Thread):
    """Collects a child's stdout lines so a test can wait for one with a timeout instead of blocking on read."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.child = child
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []

    def run(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no matching line within {timeout}s; lines so far: {self.seen}")


def column(header: str, row: str, name: str) -> str:
    """The cell of column `name` in a kubectl table row, by the header's column positions."""
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    start = next(s for s in starts if header[s:].split()[0] == name)
    following = [s for s in starts if s > start]
    end = following[0] if following else len(row)
    return row[start:end].strip()

"""SIGTERM (or SIGINT) to `python -m benchmarks` stops the children its benchmark started (exporter, Prometheus,
operator, API server) before it exits: Python's default for SIGTERM is to die on the spot, orphaning them."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

from proc_support import alive

REPO = pathlib.Path(__file__).resolve().parents[2]
BENCH = """
import time
from benchmarks.harness import scraped_exporter

def run(progress):
    with scraped_exporter(["a"], seed=1, rate=0) as _:
        progress("children ready")
        time.sleep(600)
"""
LAUNCH = """
import sys
import benchmarks
benchmarks.__path__.append(sys.argv[1])  # the test's benchmark, found as the harness finds every bench_ module
from benchmarks.harness import main
sys.exit(main(["sleepy"]))
"""


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            found |= {int(child)} | _descendants(int(child))
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_benchmark_run_stops_its_children_before_it_exits(tmp_path: pathlib.Path, signum: int) -> None:
    (tmp_path / "bench_sleepy.py").write_text(textwrap.dedent(BENCH))
    parent = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    children: set[int] = set()
    try:
        assert parent.stdout is not None
        for line in parent.stdout:  # a failure budget, not a speed claim: the pytest timeout bounds it
            if "children ready" in line:
                break
        children = _descendants(parent.pid)
        assert len(children) >= 2, "the exporter and Prometheus run as children"
        parent.send_signal(signum)
        parent.wait(120)
        orphans = [pid for pid in children if alive(pid)]
        assert not orphans, f"still running after the harness exited: {orphans}"
        assert parent.returncode != 0
    finally:
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait()

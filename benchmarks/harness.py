"""Find `benchmarks/bench_*.py`, run each, print its table and keep it as Markdown in `benchmarks/results/`.

A benchmark module exposes `run(progress: Callable[[str], None]) -> BenchTable`; `progress` reports what
it is doing while it runs (long benchmarks otherwise look hung).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import logging
import os
import pkgutil
import platform
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlrollouts.localstack import binaries
from mlrollouts.localstack.exporter import ExporterProcess
from mlrollouts.localstack.prometheus import PrometheusServer
from mlrollouts.localstack.realcluster import DEFAULT_CRDS, RealApiServer
from mlrollouts.localstack.server import run_apiserver

PACKAGE = "benchmarks"
BACKEND_ENV = "MLROLLOUTS_BENCH_BACKEND"  # real | emulated | auto (default: real when its binaries are built)
PREFIX = "bench_"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchTable:
    """One benchmark's findings: a titled table, plus notes that say how to read it."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    notes: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"{self.title}: row {list(row)} has {len(row)} cells for {len(self.columns)} columns")


@contextmanager
def scraped_exporter(
    variants: Sequence[str], *, seed: int, progress: Progress | None = None, **behaviour: float
) -> Iterator[tuple[ExporterProcess, PrometheusServer]]:
    """The real exporter serving `variants` (each set to `behaviour`) and a real Prometheus scraping it: the metrics
    side every operator benchmark stands on, stopped in reverse order whatever happens."""
    exporter = ExporterProcess(list(variants), seed=seed, tick=0.1).start()
    try:
        for variant in variants:
            exporter.control(variant, **behaviour)
        if progress is not None:
            progress("starting Prometheus (first scrape takes ~6 s)")
        with PrometheusServer([exporter.target]) as prometheus:
            yield exporter, prometheus
    finally:
        exporter.stop()


@dataclass(frozen=True)
class ApiBackend:
    """Which API server a benchmark ran against, for its table."""

    kubeconfig: Path
    name: str
    """"real kube-apiserver + etcd" or "emulated"."""
    why: str = ""
    """Why the emulator stood in for the real server (empty on the real one)."""
    pids: tuple[int, ...] = ()
    """kube-apiserver's and etcd's processes (their CPU is the API's cost); none for the in-process emulator."""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.why})" if self.why else self.name


@contextmanager
def api_server(folder: Path, crd_paths: Sequence[Path] = ()) -> Iterator[ApiBackend]:
    """The real kube-apiserver + etcd (`make controlplane`) when built, else the in-process emulator, whose CPU is
    then this process's rather than the operators'; MLROLLOUTS_BENCH_BACKEND=real|emulated forces one (real: an
    error when the binaries are missing). Both serve `crd_paths`; the real server has the routing CRDs already
    (DEFAULT_CRDS), so only others are installed there."""
    wanted = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if wanted not in ("auto", "real", "emulated"):
        raise SystemExit(f"benchmarks: error: {BACKEND_ENV}={wanted!r}; choose real, emulated or auto")
    kubeconfig = folder / "kubeconfig"
    if wanted == "real" or (wanted == "auto" and binaries.available()):
        with RealApiServer(kubeconfig_path=kubeconfig) as real:
            pids = tuple(process.pid for process in real.processes.values())
            served = {path.resolve() for path in DEFAULT_CRDS}
            extra = [path for path in crd_paths if path.resolve() not in served]
            if extra:
                real.install_crd_files(extra)
            yield ApiBackend(kubeconfig, "real kube-apiserver + etcd", pids=pids)
        return
    why = f"{BACKEND_ENV}=emulated" if wanted == "emulated" else binaries.unavailable_reason()
    server = run_apiserver(0, kubeconfig, crd_paths=list(crd_paths))
    try:
        yield ApiBackend(kubeconfig, "emulated", why)
    finally:
        server.stop()


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGINT end the run with SystemExit(128 + signal), so every `finally` and context manager on the
    way out stops the children it started (exporter, Prometheus, operators, API server). Python's default for
    SIGTERM is to die on the spot, which left them all running. Further signals are ignored while that
    cleanup runs (SIGKILL still ends it)."""
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def stop(signum: int, _frame: object) -> None:
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        log.warning("benchmarks: %s received, stopping the benchmark's processes", signal.Signals(signum).name)
        raise SystemExit(128 + signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def load_average() -> str:
    """The 1/5/15-minute load averages: on a shared machine they say how much of it the figures had."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def available() -> list[str]:
    """Benchmark names (module name without the `bench_` prefix), sorted."""
    package = importlib.import_module(PACKAGE)
    return sorted(
        info.name.removeprefix(PREFIX)
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.startswith(PREFIX)
    )


def to_markdown(table: BenchTable, environment: str) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    parts = [f"# {table.title}", "", environment, "", line(table.columns), line(["---"] * len(table.columns))]
    parts.extend(line(row) for row in table.rows)
    if table.notes:
        parts.append("")
        parts.extend(f"- {note}" for note in table.notes)
    return "\n".join(parts) + "\n"


def _environment() -> str:
    return (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} with {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.system()}."
    )


def _print(console: Console, table: BenchTable) -> None:
    rich_table = Table(title=table.title)
    for column in table.columns:
        rich_table.add_column(column, justify="right")
    for row in table.rows:
        rich_table.add_row(*(str(cell) for cell in row))
    console.print(rich_table)
    for note in table.notes:
        console.print(f"  - {note}")


def run_one(name: str, console: Console) -> Path:
    module = importlib.import_module(f"{PACKAGE}.{PREFIX}{name}")
    started = time.perf_counter()
    table: BenchTable = module.run(lambda message: console.print(f"[dim]{name}: {message}[/dim]"))
    log.info("benchmark=%s seconds=%.1f", name, time.perf_counter() - started)
    _print(console, table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(to_markdown(table, _environment()))
    return path


ENVIRONMENT_HELP = {
    BACKEND_ENV: "real | emulated | auto: the API server the operator benchmarks run against (auto: real when built)",
    "MLROLLOUTS_BENCH_CAPACITY": "experiments in the capacity benchmark (default 3000)",
}


def _parser(names: Sequence[str]) -> argparse.ArgumentParser:
    """`python -m benchmarks --help`: each benchmark's summary (its docstring's first line) and the knobs."""
    width = max(map(len, names), default=0)
    listing = [f"  {name:<{width}}  {_summary(name)}" for name in names]
    knobs = [f"  {variable}: {meaning}" for variable, meaning in ENVIRONMENT_HELP.items()]
    return argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run benchmarks and write their tables to benchmarks/results/NAME.md (make bench runs all).",
        epilog="\n".join(["benchmarks:", *listing, "", "environment:", *knobs]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _summary(name: str) -> str:
    """The first sentence of a benchmark module's docstring, read without importing the module (some imports are
    slow)."""
    spec = importlib.util.find_spec(f"{PACKAGE}.{PREFIX}{name}")
    source = Path(spec.origin).read_text() if spec and spec.origin else ""
    paragraph = (ast.get_docstring(ast.parse(source)) or "").split("\n\n")[0]
    return " ".join(paragraph.split()).split(". ")[0].removesuffix(".")


def main(argv: Sequence[str]) -> int:
    """Run the named benchmarks (all when none is named); returns the exit code."""
    names = available()
    parser = _parser(names)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    try:
        requested = parser.parse_args(list(argv)).names
    except SystemExit as stop:  # --help (0) or a malformed command line (2)
        return int(stop.code or 0)
    console = Console()
    if not console.is_terminal:  # keep wide tables readable in logs and CI output
        console = Console(width=200)
    wanted = [arg.removeprefix(PREFIX) for arg in requested] or names
    unknown = [name for name in wanted if name not in names]
    if unknown:
        Console(stderr=True).print(
            f"benchmarks: error: unknown benchmark {', '.join(unknown)}; choose from {', '.join(names)}"
        )
        return 2
    failed = []
    with stopped_by_signals():
        for name in wanted:
            try:
                path = run_one(name, console)
            except Exception:  # one broken benchmark must not cost the others' tables (a run takes an hour)
                log.exception("benchmark=%s failed", name)
                failed.append(name)
                continue
            console.print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    if failed:
        Console(stderr=True).print(f"benchmarks: {len(failed)} failed ({', '.join(failed)}); tables unchanged")
    return 1 if failed else 0

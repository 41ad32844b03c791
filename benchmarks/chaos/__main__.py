"""`python -m benchmarks.chaos [--points 50] [--seed N]`: the sweep, a table in benchmarks/results/chaos.md,
exit status 1 on any invariant violation."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

from rich.console import Console

from benchmarks.chaos.faults import KINDS, ChaosStack, plan
from benchmarks.chaos.sweep import LONG_STEPS, STEPS, SweepResult, sweep
from benchmarks.harness import RESULTS, BenchTable, _environment, stopped_by_signals, to_markdown


def table(result: SweepResult, seed: int, seconds: float, per_canary: int) -> BenchTable:
    rows = []
    for kind in KINDS:
        points = [p for p in result.points if p.kind == kind]
        violations = str(sum(len(p.violations) for p in points))
        durations = [p.fault.duration_s for p in points]
        detail = f"{min(durations):.1f}-{max(durations):.1f}s long" if durations else "-"
        if kind == "operator-sigkill":
            aimed, caught = sum(p.fault.at_route_write for p in points), sum(p.caught_route_write for p in points)
            detail += f", {aimed} aimed at a route write ({caught} caught there)"
        rows.append([kind, str(len(points)), violations, detail])
    outcomes = {o: sum(c.outcome == o for c in result.canaries) for o in sorted({c.outcome for c in result.canaries})}
    rows.append(
        [
            "canary end + deletion",
            str(len(result.canaries)),
            str(sum(len(c.violations) for c in result.canaries)),
            ", ".join(f"{n} {o}" for o, n in outcomes.items()),
        ]
    )
    rows.append(["total", str(len(result.points)), str(result.violations), f"seed {seed}, {seconds:.0f}s wall"])
    problems = [f"{p.canary} {p.detail}: {v}" for p in result.points for v in p.violations]
    problems += [f"{c.name} end/deletion: {v}" for c in result.canaries for v in c.violations]
    return BenchTable(
        title="Chaos: fault points on canaries (emulated API server, real Prometheus, real operator process)",
        columns=["fault kind", "points run", "invariant violations", "detail"],
        rows=rows,
        notes=(
            f"Seed {seed}: `make chaos SEED={seed}` replays the same kinds, moments and durations. {per_canary} fault "
            f"points per canary, canaries one after another on one stack; 1 s interval, 2 s steps, steps {STEPS} for a "
            f"canary run to its end, {LONG_STEPS} for one deleted while running.",
            "operator-sigkill: SIGKILL, down for the duration, then a fresh process; about half aim at the window "
            "where the route has changed and status.weights not yet ('caught': the kill landed there; otherwise it "
            "fired after 8 s of waiting). apiserver-freeze: a proxy between the "
            "operator and the API server holds every byte. apiserver-restart: the proxy resets every connection "
            "(watches included) and refuses new ones. prometheus-freeze: SIGSTOP/SIGCONT of the real Prometheus. "
            "prometheus-errors: a proxy answers HTTP 500 to every query.",
            "After each point: a tick after the fault ended, then the route's weights equal status.weights; "
            "status.history holds each step once and in order, and status.weights sits at the step the history "
            "reached. Canaries end in turn: run to end (the whole history again, the outcome's route, which "
            "deleting a finished experiment keeps), deleted while running, run to end, deleted while running with the "
            "operator SIGKILLed right after the delete request; a deleted running canary must give the champion "
            "100 % back and its finalizer must let the object go.",
            *(problems or ["No violations."]),
        ),
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--points", type=int, default=50, help="fault points to run (default 50)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED") or 20261201))
    parser.add_argument("--per-canary", type=int, default=3, help="fault points per canary (default 3)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS / "chaos.md")
    args = parser.parse_args(argv)
    console = Console(width=200) if not Console().is_terminal else Console()
    started = time.monotonic()

    def progress(message: str) -> None:
        console.print(f"{time.monotonic() - started:6.1f}s {message}", highlight=False, markup=False)

    faults = plan(args.seed, args.points)
    progress(f"seed {args.seed}: {len(faults)} fault points, {args.per_canary} per canary; starting the stack")
    with (
        stopped_by_signals(),
        tempfile.TemporaryDirectory(prefix="mlrollouts-chaos-") as tmp,
        ChaosStack(pathlib.Path(tmp)) as chaos,
    ):
        result = sweep(chaos, faults, progress, args.per_canary)
    bench = table(result, args.seed, time.monotonic() - started, args.per_canary)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_markdown(bench, _environment()))
    console.print(to_markdown(bench, _environment()), highlight=False, markup=False)
    console.print(f"{len(result.points)} fault points, {result.violations} violations; table in {args.output}")
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

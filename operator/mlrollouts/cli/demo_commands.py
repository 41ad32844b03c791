"""`mlrollouts demo` (a whole experiment on one machine) and `mlrollouts report NAME` (plots from a stack)."""

from __future__ import annotations

import pathlib
import time
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console

from mlrollouts.cli.extras import import_local
from mlrollouts.cli.main import UsageFailure, app
from mlrollouts.demo.processes import DemoError
from mlrollouts.demo.scenarios import SCENARIOS

DEFAULT_RUNS = pathlib.Path(".mlrollouts/demo")


@app.command("demo")
def demo_command(
    scenario: Annotated[str, typer.Option("--scenario", help=f"One of {', '.join(SCENARIOS)}.")] = "better",
    timeout: Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")] = 300.0,
    fast: Annotated[bool, typer.Option("--fast", help="Shorter steps and durations (CI).")] = False,
    rate: Annotated[float, typer.Option("--rate", help="Simulated requests per second (10-500).")] = 150.0,
    output: Annotated[
        pathlib.Path, typer.Option("--output", help="Folder for the run (kubeconfig, logs, report).")
    ] = DEFAULT_RUNS,
    plain: Annotated[
        bool | None, typer.Option("--plain/--live", help="Plain lines instead of a live panel (default: off a TTY).")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="real (etcd + kube-apiserver; the default once `make controlplane` built them) or emulated.",
        ),
    ] = None,
) -> int:
    """Run a whole experiment locally: API server (real when built, else emulated), Prometheus, model servers,
    gateway, users, operator."""
    live = import_local("mlrollouts.demo.live", "demo")
    orchestrator = import_local("mlrollouts.demo.orchestrator", "demo")
    import_local("mlrollouts.demo.report_render", "demo")  # the report at the end: fail before starting
    ProgressDisplay, DemoOptions = live.ProgressDisplay, orchestrator.DemoOptions
    choose_backend = import_local("mlrollouts.demo.backend", "demo").choose_backend
    run_demo, run_folder = orchestrator.run_demo, orchestrator.run_folder

    if scenario not in SCENARIOS:
        raise UsageFailure("--scenario", f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if timeout <= 0:
        raise UsageFailure("--timeout", f"must be a positive number of seconds, got {timeout:g}")
    if not 10 <= rate <= 500:
        raise UsageFailure("--rate", f"must be within 10-500 requests per second, got {rate:g}")
    if backend not in (None, "real", "emulated"):
        raise UsageFailure("--backend", f"must be real or emulated, got {backend!r}")
    try:
        chosen_backend, backend_line = choose_backend(backend)
    except DemoError as error:
        raise UsageFailure("--backend", str(error).removeprefix("--backend ")) from error
    chosen = SCENARIOS[scenario]
    console = Console(highlight=False, soft_wrap=True)
    run_dir = run_folder(output.resolve(), chosen)
    console.print(f"mlrollouts demo: {backend_line}")
    console.print(f"mlrollouts demo: {chosen.summary}")
    console.print(f"run folder (kubeconfig, logs, report): {run_dir}")
    console.print(f"watch with kubectl: KUBECONFIG={run_dir / 'kubeconfig'} kubectl get mexp -w")
    options = DemoOptions(chosen, run_dir, timeout=timeout, fast=fast, rate=rate, backend=chosen_backend)
    try:
        with ProgressDisplay(console, chosen.summary, plain=plain) as display:
            result = run_demo(options, display)
    except DemoError as error:
        console.print(f"mlrollouts demo: failed: {error}")
        return 1
    except KeyboardInterrupt:
        console.print("mlrollouts demo: interrupted; every process it started was stopped")
        return 130
    console.print(
        f"ended in phase {result.phase} ({result.reason}) after {result.elapsed:.0f}s: "
        + (
            "as expected"
            if result.expected
            else f"expected {chosen.expected_phase} ({chosen.expected_reason or 'any reason'})"
        )
    )
    console.print(f"report: {result.report_html}")
    return 0 if result.expected else 1


@app.command("report")
def report_command(
    name: Annotated[str, typer.Argument(help="ModelExperiment name.")],
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (default: context's).")] = None,
    kubeconfig: Annotated[str | None, typer.Option("--kubeconfig", help="Kubeconfig file.")] = None,
    prometheus: Annotated[
        str | None, typer.Option("--prometheus", help="Prometheus URL (default: the experiment's analysis address).")
    ] = None,
    output: Annotated[
        pathlib.Path | None, typer.Option("--output", help="Folder for the PNGs and report.html.")
    ] = None,
    since: Annotated[
        float | None,
        typer.Option("--since", help="Seconds of history to plot (default: since the experiment started)."),
    ] = None,
) -> int:
    """Plot weights, the primary metric, p-value / P(better) and guardrails of an experiment into report.html."""
    from mlrollouts.cli.cluster import Cluster

    report = import_local("mlrollouts.demo.report", "report")
    import_local("mlrollouts.demo.report_render", "report")  # plots need matplotlib: say so up front

    if prometheus is not None and not prometheus.startswith(("http://", "https://")):
        raise UsageFailure("--prometheus", f"must be an http(s) URL such as http://127.0.0.1:9090, got {prometheus!r}")
    if since is not None and since <= 0:
        raise UsageFailure("--since", f"must be a positive number of seconds, got {since:g}")
    cluster = Cluster(kubeconfig, None)
    experiment = cluster.get(cluster.namespace(namespace), name)
    address = prometheus or ((experiment.get("spec") or {}).get("analysis") or {}).get("prometheus", {}).get("address")
    if not address:
        raise UsageFailure("--prometheus", "the experiment names no Prometheus; give its URL")
    end = time.time()
    start = end - since if since else _started(experiment, end)
    data = report.collect(address, experiment, start, end)
    html = report.write(data, output or pathlib.Path("reports") / name)
    typer.echo(f"report: {html.resolve()}")
    for problem in data.problems:
        typer.echo(f"note: {problem}")
    return 0


def _started(experiment: dict, end: float) -> float:
    """The experiment's start (status.startedAt, else creation), a few seconds early; one hour back without."""
    meta, status = experiment.get("metadata") or {}, experiment.get("status") or {}
    for stamp in (status.get("startedAt"), meta.get("creationTimestamp")):
        if stamp:
            return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() - 5
    return end - 3600

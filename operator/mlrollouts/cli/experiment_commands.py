"""`mlrollouts status | list | promote | rollback | pause | resume`: the on-call engineer's commands.

Manual actions are requests, not edits: the CLI sets the annotation `mlrollouts.dev/action` and the operator
handles it at once (and removes it), recording it in the experiment's history like any other decision.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from mlrollouts.api.durations import duration_seconds
from mlrollouts.cli.cluster import Cluster, ClusterError
from mlrollouts.cli.experiment_view import render_experiment, summary_row
from mlrollouts.cli.main import UsageFailure, app
from mlrollouts.cli.watch import TIMED_OUT, progress_line, watch

ACTION_ANNOTATION = "mlrollouts.dev/action"
TERMINAL = ("Promoted", "RolledBack", "Inconclusive")

KubeconfigOption = typer.Option(
    None, "--kubeconfig", help="Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config)."
)
ContextOption = typer.Option(None, "--context", help="kubeconfig context to use.")
NamespaceOption = typer.Option(None, "--namespace", "-n", help="Namespace (default: the context's, else default).")


OUTPUTS = ("text", "json", "yaml")


def _output(value: str) -> str:
    if value not in OUTPUTS:
        raise UsageFailure("--output", f"must be text, json or yaml, got {value!r}")
    return value


def _emit(data: Any, output: str) -> None:
    """json and yaml print the data as it is (the object, or the rows), keys sorted as kubectl does."""
    if output == "json":
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=True, allow_unicode=True), nl=False)


def _timeout(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return duration_seconds(value)
    except ValueError as error:
        raise UsageFailure("--timeout", str(error)) from None


@app.command()
def status(
    name: str = typer.Argument(..., help="ModelExperiment name."),
    namespace: str | None = NamespaceOption,
    output: str = typer.Option("text", "--output", "-o", help="text, json or yaml."),
    watch_: bool = typer.Option(
        False,
        "--watch",
        "-w",
        help="Wait for a verdict; exit 0 Promoted/ReadyToPromote/ShadowPassed, 1 RolledBack/Invalid/Failed, "
        "3 Inconclusive, 124 timeout.",
    ),
    timeout: str | None = typer.Option(None, "--timeout", help="With --watch: give up after this long, e.g. 30m."),
    interval: float = typer.Option(2.0, "--interval", help="With --watch: seconds between reads.", min=0.1),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> int:
    """Phase, step, weights, samples, plan and ETA, analysis with its reason, guardrails and history."""
    output, seconds = _output(output), _timeout(timeout)
    if seconds is not None and not watch_:
        raise UsageFailure("--timeout", "only applies with --watch")
    cluster = Cluster(kubeconfig, context)
    ns = cluster.namespace(namespace)
    if not watch_:
        obj = cluster.get(ns, name)
        if output == "text":
            Console().print(render_experiment(obj))
        else:
            _emit(obj, output)
        return 0
    return _watch(cluster, ns, name, output, seconds, interval)


def _watch(cluster: Cluster, ns: str, name: str, output: str, seconds: float | None, interval: float) -> int:
    def changed(obj: dict[str, Any]) -> None:
        if output == "text":
            typer.echo(f"{datetime.now(UTC):%H:%M:%S}  {name}  {progress_line(obj)}")

    def retry(message: str) -> None:
        typer.echo(f"mlrollouts: warning: {message} (retrying)", err=True)

    code, last = watch(cluster, ns, name, timeout=seconds, interval=interval, on_change=changed, on_retry=retry)
    if output != "text" and last is not None:
        _emit(last, output)
    if code == TIMED_OUT:
        phase = ((last or {}).get("status") or {}).get("phase") or "Pending"
        typer.echo(f"mlrollouts: timed out after {seconds:g}s waiting for {ns}/{name} (phase {phase})", err=True)
    return code


@app.command("list")
def list_experiments(
    namespace: str | None = NamespaceOption,
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="List every namespace."),
    output: str = typer.Option("text", "--output", "-o", help="text, json or yaml."),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """One line per experiment: strategy, phase, weights, decision."""
    output = _output(output)
    cluster = Cluster(kubeconfig, context)
    rows = [summary_row(o) for o in cluster.list(None if all_namespaces else cluster.namespace(namespace))]
    if output != "text":
        _emit(rows, output)
        return
    table = Table()
    for column in ("NAMESPACE", "NAME", "STRATEGY", "PHASE", "WEIGHTS", "DECISION", "P / P(BETTER)"):
        table.add_column(column)
    for row in rows:
        stat = row["pValue"] if row["pValue"] is not None else row["probabilityBetter"]
        table.add_row(
            row["namespace"],
            row["name"],
            row["strategy"],
            row["phase"],
            " ".join(f"{k}={v}" for k, v in row["weights"].items()),
            row["decision"] or "",
            "" if stat is None else f"{stat:.3g}",
        )
    Console().print(table if rows else "No ModelExperiments found.")


def _request(action: str, name: str, namespace: str | None, kubeconfig: str | None, context: str | None) -> None:
    cluster = Cluster(kubeconfig, context)
    ns = cluster.namespace(namespace)
    obj = cluster.get(ns, name)
    phase = (obj.get("status") or {}).get("phase")
    if phase in TERMINAL:
        raise ClusterError(f"ModelExperiment {ns}/{name} is already {phase}: {action} changes nothing")
    if action == "resume" and phase != "Paused":
        raise ClusterError(f"ModelExperiment {ns}/{name} is {phase or 'Pending'}, not Paused: nothing to resume")
    cluster.annotate(ns, name, ACTION_ANNOTATION, action)
    typer.echo(f"{action} requested for {ns}/{name} (phase {phase or 'Pending'}); the operator applies it now")


def _register_action(action: str, help_text: str) -> None:
    def command(
        name: str = typer.Argument(..., help="ModelExperiment name."),
        namespace: str | None = NamespaceOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        _request(action, name, namespace, kubeconfig, context)

    command.__doc__ = help_text
    app.command(action)(command)


_register_action("promote", "Promote the challenger now (skips the remaining steps and the statistics).")
_register_action("rollback", "Roll back now: champion 100 %, no mirror.")
_register_action("pause", "Hold traffic where it is; nothing advances until resume.")
_register_action("resume", "Continue a paused experiment; the current step starts afresh.")

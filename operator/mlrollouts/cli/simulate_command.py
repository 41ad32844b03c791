"""`mlrollouts simulate`: before launch, how often this exact manifest rolls back a healthy model.

It runs the operator's own engine on simulated traffic that follows the weights the engine sets (see
mlrollouts.simulation), `--runs` times with seeds derived from `--seed`, and prints the share of runs per
outcome with the median time and traffic to a decision. `--effect 0` (the default) measures false decisions;
`--effect -0.2` how often a 20 % worse challenger is caught.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import timedelta
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlrollouts.api.errors import SpecError
from mlrollouts.api.experiment import parse_experiment
from mlrollouts.cli.api_commands import _read
from mlrollouts.cli.main import UsageFailure, app
from mlrollouts.simulation import TrafficModel, horizon, planned_length, simulate


def _load(source: str):
    try:
        documents = [d for d in yaml.safe_load_all(_read(source)) if isinstance(d, dict)]
    except yaml.YAMLError as error:
        raise UsageFailure("-f", f"{source}: YAML syntax error: {error}") from None
    experiments = [d for d in documents if d.get("kind") == "ModelExperiment"]
    if len(experiments) != 1:
        raise UsageFailure("-f", f"{source}: expected exactly one ModelExperiment, found {len(experiments)}")
    try:
        return parse_experiment(experiments[0]).spec
    except SpecError as error:
        raise UsageFailure("-f", f"{source} is invalid: {error} (run 'mlrollouts validate -f {source}')") from None


def _pair(flag: str, text: str | None, form: str, example: str) -> tuple[float, float] | None:
    if text is None:
        return None
    first, _, second = text.partition(":")
    try:
        values = (float(first), float(second))
    except ValueError:
        raise UsageFailure(flag, f"write {form}, e.g. {example}, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageFailure(flag, f"both numbers of {form} must be finite, got {text!r}")
    return values


def _model(
    spec, traffic: float, baseline: float | None, effect: float, drift: str | None, novelty: str | None
) -> TrafficModel:
    metric = spec.analysis.primary_metric
    if metric.type == "ratio":
        raise UsageFailure("-f", "simulate covers proportion and mean metrics; a ratio metric needs per-user data")
    if not traffic > 0 or not math.isfinite(traffic):
        raise UsageFailure("--traffic", f"users per minute must be a positive number, got {traffic:g}")
    base = baseline if baseline is not None else metric.baseline
    spread = _pair("--drift", drift, "FROM:TO", "0.11:0.09")
    early = _pair("--novelty", novelty, "EFFECT:MINUTES", "0.2:360")
    if early is not None and not (early[0] > -1 and early[1] > 0):
        raise UsageFailure("--novelty", f"the effect must be above -1 and the minutes positive, got {novelty!r}")
    if base is None and spread is None:
        raise UsageFailure("--baseline", "give the champion's rate or mean (or set primaryMetric.baseline)")
    base = base if base is not None else spread[0]
    if metric.type == "proportion" and not 0 < base < 1:
        raise UsageFailure("--baseline", f"a proportion's baseline must be between 0 and 1, got {base:g}")
    if not effect > -1 or not math.isfinite(effect):
        raise UsageFailure("--effect", f"a relative effect must be above -1 (e.g. -0.2 = 20 % worse), got {effect:g}")
    return TrafficModel(
        users_per_minute=traffic,
        baseline=base,
        effect=effect,
        drift=spread,
        horizon_minutes=planned_length(spec).total_seconds() / 60,
        metric_type=metric.type,
        standard_deviation=metric.standard_deviation,
        novelty=early,
    )


@app.command("simulate")
def simulate_command(
    file: Annotated[str, typer.Option("-f", "--filename", help="The ModelExperiment manifest to try.")],
    traffic: Annotated[float, typer.Option("--traffic", help="Users per minute entering the experiment.")],
    baseline: Annotated[
        float | None, typer.Option("--baseline", help="Champion's rate or mean (default: primaryMetric.baseline).")
    ] = None,
    effect: Annotated[float, typer.Option("--effect", help="Challengers' relative lift; 0 = a healthy copy.")] = 0.0,
    drift: Annotated[
        str | None, typer.Option("--drift", help="FROM:TO: the base rate drifts for everyone over the rollout.")
    ] = None,
    novelty: Annotated[
        str | None,
        typer.Option(
            "--novelty", help="EFFECT:MINUTES: the challengers' effect for the first minutes (then --effect)."
        ),
    ] = None,
    delay: Annotated[float, typer.Option("--delay", help="Minutes between a request and its counted outcome.")] = 0.0,
    lost: Annotated[
        float, typer.Option("--lost", help="Share of the challengers' outcomes never logged (a sample ratio mismatch).")
    ] = 0.0,
    bad_rate: Annotated[
        float, typer.Option("--bad-rate", help="Ratio guardrails: the champion's share of bad requests.")
    ] = 0.002,
    bad_ratio: Annotated[
        float, typer.Option("--bad-ratio", help="Ratio guardrails: challengers' bad share over the champion's.")
    ] = 1.0,
    bad_guardrail: Annotated[
        str | None,
        typer.Option("--bad-guardrail", help="Only this ratio guardrail sees --bad-ratio (default: all of them)."),
    ] = None,
    hours: Annotated[
        float | None,
        typer.Option("--hours", help="Length of each run (default: canary steps x stepDuration x 3, maxDuration)."),
    ] = None,
    runs: Annotated[int, typer.Option("--runs", help="Simulated experiments.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed; the same seed gives the same figures.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Run the real engine on simulated traffic: outcome rates of this manifest before launch."""
    spec = _load(file)
    model = _model(spec, traffic, baseline, effect, drift, novelty)
    if not 0 <= delay <= 24 * 60:
        raise UsageFailure("--delay", f"minutes between 0 and 1440, got {delay:g}")
    if not 0 <= lost < 1:
        raise UsageFailure("--lost", f"a share in [0, 1), e.g. 0.2, got {lost:g}")
    if not 0 <= bad_rate <= 1 or not 0 <= bad_rate * bad_ratio <= 1:
        raise UsageFailure("--bad-rate", f"bad shares must stay in [0, 1], got {bad_rate:g} × {bad_ratio:g}")
    ratio_names = [g.name for g in spec.analysis.guardrails if g.kind == "ratio"]
    if bad_guardrail is not None and bad_guardrail not in ratio_names:
        raise UsageFailure("--bad-guardrail", f"name one of the ratio guardrails {ratio_names}, got {bad_guardrail!r}")
    if hours is not None and not 0 < hours <= 24 * 365:
        raise UsageFailure("--hours", f"must be above 0 and at most 8760, got {hours:g}")
    length = timedelta(hours=hours) if hours is not None else None
    model = replace(
        model, delay_minutes=delay, lost=lost, bad_rate=bad_rate, bad_ratio=bad_ratio, bad_guardrail=bad_guardrail
    )
    if not 1 <= runs <= 100_000:
        raise UsageFailure("--runs", f"must be between 1 and 100000, got {runs}")
    columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("runs", total=runs)
        summary = simulate(
            spec, model, runs, seed, progress=lambda done: progress.update(task, completed=done), length=length
        )
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2))
        return
    table = Table(title=f"{runs} simulated {spec.strategy} runs at {traffic:g} users/min, effect {effect:+g}")
    table.add_column("outcome")
    table.add_column("share of runs", justify="right")
    for phase, share in summary.outcomes.items():
        table.add_row(phase, f"{100 * share:.1f}%")
    console = Console()
    console.print(table)
    minutes = summary.median_minutes_to_decision
    samples = summary.median_samples_to_decision
    console.print(
        f"median to a decision: {'n/a' if minutes is None else f'{minutes:.0f} min'}, "
        f"{'n/a' if samples is None else f'{samples:,.0f} samples'} "
        f"(runs stop at {(length or horizon(spec)).total_seconds() / 60:.0f} min); "
        f"mean regret {summary.mean_regret:,.1f} outcomes"
    )
    reached = ", ".join(f"{w}% in {100 * share:.1f}%" for w, share in summary.largest_weight.items())
    console.print(f"largest challenger weight reached: {reached}")

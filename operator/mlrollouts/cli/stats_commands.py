"""`mlrollouts plan` and `mlrollouts analyze`: the statistics engine from the command line.

`plan` says how much traffic an experiment needs; `analyze` reads the counts of a finished (or running)
experiment and gives the frequentist, sequential, Bayesian and sample-ratio view with one decision.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mlrollouts import stats
from mlrollouts.cli.analyze_report import METHODS, Settings, analyze_means, analyze_proportions
from mlrollouts.cli.main import UsageFailure, app
from mlrollouts.stats.planning import sequential_sample_size


def _probability_option(name: str, value: float) -> float:
    if not 0.0 < value < 1.0 or math.isnan(value):
        raise UsageFailure(name, f"must be strictly between 0 and 1, got {value:g}")
    return value


def parse_counts(name: str, text: str) -> tuple[int, int]:
    """SUCCESSES/TRIALS, e.g. 1380/8500."""
    successes_text, separator, trials_text = text.partition("/")
    try:
        successes, trials = int(successes_text), int(trials_text)
    except ValueError:
        successes = trials = -1
        separator = ""
    if not separator:
        raise UsageFailure(name, f"{text!r} must look like SUCCESSES/TRIALS, e.g. 1380/8500")
    if successes < 0 or trials < 0:
        raise UsageFailure(name, f"counts must be non-negative, got {text!r}")
    if trials == 0:
        raise UsageFailure(name, f"needs at least one trial, got {text!r}")
    if successes > trials:
        raise UsageFailure(name, f"successes {successes} exceed trials {trials}; write SUCCESSES/TRIALS")
    return successes, trials


def parse_mean_stats(name: str, text: str) -> stats.MeanStats:
    """n=COUNT,mean=MEAN,std=STD, e.g. n=500,mean=0.231,std=0.09."""
    fields: dict[str, float] = {}
    for part in text.split(","):
        key, separator, value = part.partition("=")
        try:
            fields[key.strip()] = float(value)
        except ValueError:
            separator = ""
        if not separator:
            break
    else:
        if set(fields) == {"n", "mean", "std"}:
            n, std = fields["n"], fields["std"]
            if n < 2 or not float(n).is_integer():
                raise UsageFailure(name, f"n must be a whole number of at least 2, got {n:g}")
            if std < 0 or not math.isfinite(std):
                raise UsageFailure(name, f"std must be non-negative, got {std:g}")
            return stats.MeanStats(n=int(n), mean=fields["mean"], var=std * std)
    raise UsageFailure(name, f"{text!r} must look like n=COUNT,mean=MEAN,std=STD, e.g. n=500,mean=0.23,std=0.09")


def parse_weights(text: str) -> tuple[float, float]:
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 2 or not all(w > 0 and math.isfinite(w) for w in weights):
        raise UsageFailure("--weights", f"{text!r} must be two positive numbers, control first, e.g. 50,50")
    return weights[0], weights[1]


def _emit(result: dict[str, Any], rows: list[tuple[str, str]], title: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=title)
    table.add_column("")
    table.add_column("value", justify="right")
    for label, value in rows:
        table.add_row(label, value)
    Console().print(table)


@app.command("plan")
def plan_command(
    baseline: Annotated[float, typer.Option("--baseline", help="Control's conversion rate, e.g. 0.18.")],
    mde: Annotated[float, typer.Option("--mde", help="Smallest effect worth detecting; relative: -0.10 = 10 % drop.")],
    alpha: Annotated[float, typer.Option("--alpha", help="False-positive rate.")] = 0.05,
    power: Annotated[float, typer.Option("--power", help="Chance of detecting an effect of size --mde.")] = 0.8,
    daily_traffic: Annotated[
        float | None, typer.Option("--daily-traffic", help="Users per day entering the experiment (all variants).")
    ] = None,
    variants: Annotated[
        int,
        typer.Option(
            "--variants",
            help="Variants sharing traffic equally; alpha is split across the challengers as the operator does.",
        ),
    ] = 2,
    absolute: Annotated[bool, typer.Option("--absolute", help="Read --mde as a difference in rates.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """How many users each variant needs, and how many days that takes."""
    _probability_option("--baseline", baseline)
    _probability_option("--alpha", alpha)
    _probability_option("--power", power)
    if variants < 2:
        raise UsageFailure("--variants", f"an experiment needs at least 2 variants, got {variants}")
    if daily_traffic is not None and not daily_traffic > 0:
        raise UsageFailure("--daily-traffic", f"must be positive, got {daily_traffic:g}")
    try:
        target = stats.treatment_rate(baseline, mde, relative=not absolute)
    except ValueError as error:
        raise UsageFailure("--mde", str(error)) from None
    per_comparison = alpha / (variants - 1)  # the operator's Bonferroni split across challengers (engine/planning)
    per_variant = stats.sample_size_proportions(baseline, mde, alpha=per_comparison, power=power, relative=not absolute)
    difference = target - baseline
    sequential = sequential_sample_size(
        baseline * (1 - baseline),  # as the operator's plan (engine/planning.py)
        difference,
        tau=abs(difference),
        alpha=per_comparison,
        power=power,
    )
    days = None if daily_traffic is None else stats.plan_duration(per_variant, daily_traffic, 1.0 / variants)
    result = {
        "per_variant": per_variant,
        "total": per_variant * variants,
        "days": None if days is None else round(days, 3),
        "baseline": baseline,
        "treatment_rate": target,
        "alpha": alpha,
        "alpha_per_comparison": per_comparison,
        "per_variant_sequential": sequential,
        "power": power,
        "variants": variants,
    }
    rows = [
        ("rates", f"{baseline:.4g} -> {target:.4g}"),
        ("per variant (fixed horizon)", f"{per_variant:,}"),
        ("per variant (sequential, the operator's default)", f"{sequential:,}"),
        (f"total ({variants} variants)", f"{per_variant * variants:,}"),
        ("days", "give --daily-traffic" if days is None else f"{days:.1f}"),
    ]
    split_note = f", {per_comparison:.3g} per challenger" if variants > 2 else ""
    _emit(result, rows, f"Sample size (alpha {alpha:g}{split_note}, power {power:g})", as_json)


@app.command("analyze")
def analyze_command(
    control: Annotated[str, typer.Option("--control", help="SUCCESSES/TRIALS, or n=,mean=,std= with --metric mean.")],
    treatment: Annotated[str, typer.Option("--treatment", help="Same format as --control.")],
    metric: Annotated[str, typer.Option("--metric", help="proportion or mean.")] = "proportion",
    weights: Annotated[str, typer.Option("--weights", help="Configured split, control first.")] = "50,50",
    alpha: Annotated[float, typer.Option("--alpha", help="False-positive rate.")] = 0.05,
    mde: Annotated[
        float, typer.Option("--mde", help="Planned relative effect; sets the sequential test's tau.")
    ] = stats.DEFAULT_RELATIVE_MDE,
    direction: Annotated[str, typer.Option("--direction", help="Which way is better: increase or decrease.")] = (
        "increase"
    ),
    method: Annotated[
        str,
        typer.Option(
            "--method", help="What decides: sequential (the operator's default, valid at any look), fixed, bayesian."
        ),
    ] = "sequential",
    srm_threshold: Annotated[
        float, typer.Option("--srm-threshold", help="Sample-ratio alarm below this p (the operator's srmPValue).")
    ] = stats.SRM_ALARM_THRESHOLD,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Compare treatment with control; the decision is --method's, as the operator would make it."""
    if metric not in ("proportion", "mean"):
        raise UsageFailure("--metric", f"must be 'proportion' or 'mean', got {metric!r}")
    if direction not in ("increase", "decrease"):
        raise UsageFailure("--direction", f"must be 'increase' or 'decrease', got {direction!r}")
    _probability_option("--alpha", alpha)
    _probability_option("--srm-threshold", srm_threshold)
    if method not in METHODS:
        raise UsageFailure("--method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    if mde == 0 or not math.isfinite(mde):
        raise UsageFailure("--mde", f"must be a non-zero relative effect, e.g. 0.05, got {mde:g}")
    settings = Settings(parse_weights(weights), alpha, mde, direction == "increase", method, srm_threshold)
    if metric == "proportion":
        result, rows = analyze_proportions(
            parse_counts("--control", control), parse_counts("--treatment", treatment), settings
        )
    else:
        result, rows = analyze_means(
            parse_mean_stats("--control", control), parse_mean_stats("--treatment", treatment), settings
        )
    _emit(result, rows, f"Treatment vs control ({metric})", as_json)

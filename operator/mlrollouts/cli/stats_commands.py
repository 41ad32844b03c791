"""`mlrollouts plan` and `mlrollouts analyze`: the statistics engine from the command line.

`plan` says how much traffic an experiment needs; `analyze` reads the counts of a finished (or running)
experiment and gives the frequentist, sequential, Bayesian and sample-ratio view with one decision.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from scipy import special

from mlrollouts import stats
from mlrollouts.cli.main import UsageFailure, app
from mlrollouts.stats.differences import mean_difference, proportion_difference
from mlrollouts.stats.planning import sequential_sample_size
from mlrollouts.stats.spike_slab import spike_slab

DECISIONS = ("treatment better", "treatment worse", "no significant difference", "sample ratio mismatch")


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


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: an undefined or unbounded figure becomes null."""
    return value if math.isfinite(value) else None


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


METHODS = ("sequential", "fixed", "bayesian")


@dataclass(frozen=True)
class Verdict:
    """The chosen method's evidence in one place: what decides, and the sentence that says why."""

    method: str
    significant: bool
    direction: int  # +1 treatment higher, -1 lower, 0 undecided
    evidence: str


def _decide(verdict: Verdict, srm: float, srm_threshold: float, increase: bool) -> str:
    if srm < srm_threshold:
        return "sample ratio mismatch"
    if not verdict.significant or verdict.direction == 0:
        return "no significant difference"
    return "treatment better" if (verdict.direction > 0) == increase else "treatment worse"


def _reason(decision: str, arms: str, lift: str, verdict: Verdict, srm: float, srm_threshold: float, split: str) -> str:
    if decision == "sample ratio mismatch":
        return (
            f"Traffic split {split} is too unlikely under the configured weights (SRM p = {srm:.2g} < "
            f"{srm_threshold:g}), so assignment or logging is broken and the comparison cannot be trusted."
        )
    return f"Treatment {arms} (relative lift {lift}); {verdict.method}: {verdict.evidence}."


def _p_verdict(method: str, p_value: float, alpha: float, low: float, high: float) -> Verdict:
    """Frequentist verdicts: significant at alpha, direction from the interval (for one look, its sign)."""
    direction = 1 if low > 0 else -1 if high < 0 else 0
    comparison = "<" if p_value < alpha else ">="
    return Verdict(method, p_value < alpha, direction, f"p = {p_value:.3g} {comparison} alpha {alpha:g}")


def spike_slab_better(estimate: float, variance: float, tau: float) -> tuple[float, float]:
    """(P(treatment higher), P(lower)) under the operator's spike-and-slab posterior (one challenger)."""
    if not (variance > 0 and tau > 0):
        return 0.0, 0.0
    posterior = spike_slab(estimate, variance, tau, prior_differs=0.5)
    return posterior.probability_positive, posterior.probability_negative


def _verdict(
    method: str,
    alpha: float,
    seq: stats.SequentialResult,
    fixed: tuple[float, float, float],
    bayes: tuple[float, float],
) -> Verdict:
    """The chosen method's verdict; bayesian uses P(higher) / P(lower) against 1 - alpha, as the operator."""
    if method == "sequential":
        return _p_verdict("sequential", seq.p_value, alpha, seq.ci_low, seq.ci_high)
    if method == "fixed":
        return _p_verdict("fixed", fixed[0], alpha, fixed[1], fixed[2])
    threshold = 1 - alpha
    direction = 1 if bayes[0] >= threshold else -1 if bayes[1] >= threshold else 0
    evidence = f"P(treatment higher) = {bayes[0]:.4f}, P(lower) = {bayes[1]:.4f}, threshold {threshold:g}"
    return Verdict("bayesian", direction != 0, direction, evidence)


def _srm_rows(srm: float, threshold: float) -> tuple[dict[str, Any], tuple[str, str]]:
    verdict = "mismatch" if srm < threshold else "ok"
    return {"p_value": srm, "threshold": threshold, "verdict": verdict}, (
        "SRM p-value",
        f"{srm:.3g} ({verdict}: alarm below {threshold:g})",
    )


def _lift_text(lift: float, low: float, high: float, alpha: float) -> str:
    if not math.isfinite(lift):
        return "undefined for a control of 0"
    return f"{lift:+.1%}, {1 - alpha:.0%} CI {low:+.1%} to {high:+.1%}"


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
    split = parse_weights(weights)
    if metric == "proportion":
        result, rows = _analyze_proportions(
            parse_counts("--control", control),
            parse_counts("--treatment", treatment),
            split,
            alpha,
            mde,
            direction == "increase",
            method,
            srm_threshold,
        )
    else:
        result, rows = _analyze_means(
            parse_mean_stats("--control", control),
            parse_mean_stats("--treatment", treatment),
            split,
            alpha,
            mde,
            direction == "increase",
            method,
            srm_threshold,
        )
    _emit(result, rows, f"Treatment vs control ({metric})", as_json)


def _analyze_proportions(
    a: tuple[int, int],
    b: tuple[int, int],
    split: tuple[float, float],
    alpha: float,
    mde: float,
    increase: bool,
    method: str,
    srm_threshold: float,
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    z = stats.two_proportion_ztest(*a, *b, alpha=alpha)
    tau = stats.default_tau(z.rate_a, mde) if z.rate_a > 0 else None
    seq = stats.msprt_pvalue(*a, *b, tau=tau, alpha=alpha)
    p_better = stats.prob_b_beats_a(*a, *b)
    loss = stats.expected_loss(*a, *b)
    srm = stats.srm_pvalue([a[1], b[1]], split)
    estimate, variance = proportion_difference(*a, *b)
    verdict = _verdict(
        method, alpha, seq, (z.p_value, z.ci_low, z.ci_high), spike_slab_better(estimate, variance, seq.tau)
    )
    decision = _decide(verdict, srm, srm_threshold, increase)
    srm_json, srm_row = _srm_rows(srm, srm_threshold)
    arms = f"converts at {z.rate_b:.2%} vs {z.rate_a:.2%} for control"
    lift = _lift_text(z.relative_lift, z.relative_lift_ci_low, z.relative_lift_ci_high, alpha)
    result = {
        "metric": "proportion",
        "frequentist": {
            "p_value": z.p_value,
            "z": z.z,
            "ci_low": z.ci_low,
            "ci_high": z.ci_high,
            "relative_lift": _finite(z.relative_lift),
            "relative_lift_ci_low": _finite(z.relative_lift_ci_low),
            "relative_lift_ci_high": _finite(z.relative_lift_ci_high),
            "cohens_h": z.cohens_h,
            "effect": z.effect_label,
        },
        "sequential": {"p_value": seq.p_value, "ci_low": _finite(seq.ci_low), "ci_high": _finite(seq.ci_high)},
        "bayesian": {
            "prob_treatment_better": p_better,
            "expected_loss_control": loss.choose_a,
            "expected_loss_treatment": loss.choose_b,
        },
        "srm": srm_json,
        "method": method,
        "decision": decision,
        "reason": _reason(decision, arms, lift, verdict, srm, srm_threshold, f"{a[1]}/{b[1]}"),
    }
    rows = [
        ("control", f"{a[0]:,}/{a[1]:,} = {z.rate_a:.2%}"),
        ("treatment", f"{b[0]:,}/{b[1]:,} = {z.rate_b:.2%}"),
        ("difference", f"{z.difference:+.4f} [{z.ci_low:+.4f}, {z.ci_high:+.4f}]"),
        ("relative lift", lift),
        ("z / p-value", f"{z.z:.3f} / {z.p_value:.3g}"),
        ("Cohen's h", f"{z.cohens_h:.3f} ({z.effect_label})"),
        ("sequential p (always valid)", f"{seq.p_value:.3g}"),
        ("P(treatment better)", f"{p_better:.4f}"),
        ("expected loss control / treatment", f"{loss.choose_a:.2e} / {loss.choose_b:.2e}"),
        srm_row,
        (f"decision ({method})", decision),
    ]
    return result, rows


def _analyze_means(
    a: stats.MeanStats,
    b: stats.MeanStats,
    split: tuple[float, float],
    alpha: float,
    mde: float,
    increase: bool,
    method: str,
    srm_threshold: float,
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    t = stats.welch_ttest_from_sums(a, b, alpha=alpha)
    tau = stats.default_tau(a.mean, mde) if a.mean != 0 else None
    seq = stats.msprt_pvalue_means(a.n, a.mean, a.var, b.n, b.mean, b.var, tau=tau, alpha=alpha)
    srm = stats.srm_pvalue([a.n, b.n], split)
    # Flat-prior view of a mean for the table; the bayesian verdict is the operator's spike-and-slab one.
    p_better = float(special.ndtr(t.difference / math.sqrt(a.var / a.n + b.var / b.n))) if a.var + b.var > 0 else 0.5
    estimate, variance = mean_difference(a, b)
    verdict = _verdict(
        method, alpha, seq, (t.p_value, t.ci_low, t.ci_high), spike_slab_better(estimate, variance, seq.tau)
    )
    decision = _decide(verdict, srm, srm_threshold, increase)
    srm_json, srm_row = _srm_rows(srm, srm_threshold)
    arms = f"mean {b.mean:.4g} vs {a.mean:.4g} for control"
    lift = _lift_text(t.relative_lift, t.relative_lift_ci_low, t.relative_lift_ci_high, alpha)
    result = {
        "metric": "mean",
        "frequentist": {
            "p_value": t.p_value,
            "t": _finite(t.t),
            "df": t.df,
            "ci_low": t.ci_low,
            "ci_high": t.ci_high,
            "relative_lift": _finite(t.relative_lift),
            "relative_lift_ci_low": _finite(t.relative_lift_ci_low),
            "relative_lift_ci_high": _finite(t.relative_lift_ci_high),
            "cohens_d": t.cohens_d,
            "effect": t.effect_label,
        },
        "sequential": {"p_value": seq.p_value, "ci_low": _finite(seq.ci_low), "ci_high": _finite(seq.ci_high)},
        "bayesian": {"prob_treatment_better": p_better},
        "srm": srm_json,
        "method": method,
        "decision": decision,
        "reason": _reason(decision, arms, lift, verdict, srm, srm_threshold, f"{a.n}/{b.n}"),
    }
    rows = [
        ("control", f"n={a.n:,} mean={a.mean:.4g} sd={math.sqrt(a.var):.4g}"),
        ("treatment", f"n={b.n:,} mean={b.mean:.4g} sd={math.sqrt(b.var):.4g}"),
        ("difference", f"{t.difference:+.4g} [{t.ci_low:+.4g}, {t.ci_high:+.4g}]"),
        ("relative lift", lift),
        ("t / df / p-value", f"{t.t:.3f} / {t.df:.1f} / {t.p_value:.3g}"),
        ("Cohen's d", f"{t.cohens_d:.3f} ({t.effect_label})"),
        ("sequential p (always valid)", f"{seq.p_value:.3g}"),
        ("P(treatment higher)", f"{p_better:.4f}"),
        srm_row,
        (f"decision ({method})", decision),
    ]
    return result, rows

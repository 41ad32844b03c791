"""What `mlrollouts analyze` computes for two arms: every method's figures, and the chosen method's verdict.

The verdict is the operator's: sequential (always-valid, the default), fixed (one look at the planned n) or
bayesian (the spike-and-slab posterior of engine/bayes.py, one challenger); the SRM line uses the operator's
threshold. Kept apart from the command so each file reads in one sitting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import special

from mlrollouts import stats
from mlrollouts.stats.differences import mean_difference, proportion_difference
from mlrollouts.stats.spike_slab import spike_slab

DECISIONS = ("treatment better", "treatment worse", "no significant difference", "sample ratio mismatch")


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: an undefined or unbounded figure becomes null."""
    return value if math.isfinite(value) else None


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


@dataclass(frozen=True)
class Settings:
    """What `mlrollouts analyze` takes from its options, the same for every metric."""

    split: tuple[float, float]
    alpha: float
    mde: float
    increase: bool
    method: str
    srm_threshold: float


@dataclass(frozen=True)
class _Outcome:
    """What both metrics derive alike from their tests: the decision, the lift text and the shared JSON fields."""

    decision: str
    lift: str
    srm_row: tuple[str, str]
    sequential: dict[str, Any]
    tail: dict[str, Any]
    """srm, method, decision and reason, in the report's order."""


def _outcome(
    settings: Settings,
    seq: Any,
    frequentist: tuple[float, float, float],
    difference: tuple[float, float],
    relative_lift: tuple[float, float, float],
    srm: float,
    arms: str,
    split: str,
) -> _Outcome:
    """The verdict of `method` on one metric's tests (frequentist: p, CI low, high; difference: estimate,
    variance), its decision after the SRM check, and the report fields every metric shares."""
    method, alpha, srm_threshold = settings.method, settings.alpha, settings.srm_threshold
    verdict = _verdict(method, alpha, seq, frequentist, spike_slab_better(*difference, seq.tau))
    decision = _decide(verdict, srm, srm_threshold, settings.increase)
    srm_json, srm_row = _srm_rows(srm, srm_threshold)
    lift = _lift_text(*relative_lift, alpha)
    sequential = {"p_value": seq.p_value, "ci_low": _finite(seq.ci_low), "ci_high": _finite(seq.ci_high)}
    reason = _reason(decision, arms, lift, verdict, srm, srm_threshold, split)
    tail = {"srm": srm_json, "method": method, "decision": decision, "reason": reason}
    return _Outcome(decision, lift, srm_row, sequential, tail)


def analyze_proportions(
    a: tuple[int, int], b: tuple[int, int], settings: Settings
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    alpha, mde, method = settings.alpha, settings.mde, settings.method
    z = stats.two_proportion_ztest(*a, *b, alpha=alpha)
    tau = stats.default_tau(z.rate_a, mde) if z.rate_a > 0 else None
    seq = stats.msprt_pvalue(*a, *b, tau=tau, alpha=alpha)
    p_better = stats.prob_b_beats_a(*a, *b)
    loss = stats.expected_loss(*a, *b)
    srm = stats.srm_pvalue([a[1], b[1]], settings.split)
    outcome = _outcome(
        settings,
        seq,
        (z.p_value, z.ci_low, z.ci_high),
        proportion_difference(*a, *b),
        (z.relative_lift, z.relative_lift_ci_low, z.relative_lift_ci_high),
        srm,
        f"converts at {z.rate_b:.2%} vs {z.rate_a:.2%} for control",
        f"{a[1]}/{b[1]}",
    )
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
        "sequential": outcome.sequential,
        "bayesian": {
            "prob_treatment_better": p_better,
            "expected_loss_control": loss.choose_a,
            "expected_loss_treatment": loss.choose_b,
        },
        **outcome.tail,
    }
    rows = [
        ("control", f"{a[0]:,}/{a[1]:,} = {z.rate_a:.2%}"),
        ("treatment", f"{b[0]:,}/{b[1]:,} = {z.rate_b:.2%}"),
        ("difference", f"{z.difference:+.4f} [{z.ci_low:+.4f}, {z.ci_high:+.4f}]"),
        ("relative lift", outcome.lift),
        ("z / p-value", f"{z.z:.3f} / {z.p_value:.3g}"),
        ("Cohen's h", f"{z.cohens_h:.3f} ({z.effect_label})"),
        ("sequential p (always valid)", f"{seq.p_value:.3g}"),
        ("P(treatment better)", f"{p_better:.4f}"),
        ("expected loss control / treatment", f"{loss.choose_a:.2e} / {loss.choose_b:.2e}"),
        outcome.srm_row,
        (f"decision ({method})", outcome.decision),
    ]
    return result, rows


def analyze_means(
    a: stats.MeanStats, b: stats.MeanStats, settings: Settings
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    alpha, mde, method = settings.alpha, settings.mde, settings.method
    t = stats.welch_ttest_from_sums(a, b, alpha=alpha)
    tau = stats.default_tau(a.mean, mde) if a.mean != 0 else None
    seq = stats.msprt_pvalue_means(a.n, a.mean, a.var, b.n, b.mean, b.var, tau=tau, alpha=alpha)
    srm = stats.srm_pvalue([a.n, b.n], settings.split)
    # Flat-prior view of a mean for the table; the bayesian verdict is the operator's spike-and-slab one.
    p_better = float(special.ndtr(t.difference / math.sqrt(a.var / a.n + b.var / b.n))) if a.var + b.var > 0 else 0.5
    outcome = _outcome(
        settings,
        seq,
        (t.p_value, t.ci_low, t.ci_high),
        mean_difference(a, b),
        (t.relative_lift, t.relative_lift_ci_low, t.relative_lift_ci_high),
        srm,
        f"mean {b.mean:.4g} vs {a.mean:.4g} for control",
        f"{a.n}/{b.n}",
    )
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
        "sequential": outcome.sequential,
        "bayesian": {"prob_treatment_better": p_better},
        **outcome.tail,
    }
    rows = [
        ("control", f"n={a.n:,} mean={a.mean:.4g} sd={math.sqrt(a.var):.4g}"),
        ("treatment", f"n={b.n:,} mean={b.mean:.4g} sd={math.sqrt(b.var):.4g}"),
        ("difference", f"{t.difference:+.4g} [{t.ci_low:+.4g}, {t.ci_high:+.4g}]"),
        ("relative lift", outcome.lift),
        ("t / df / p-value", f"{t.t:.3f} / {t.df:.1f} / {t.p_value:.3g}"),
        ("Cohen's d", f"{t.cohens_d:.3f} ({t.effect_label})"),
        ("sequential p (always valid)", f"{seq.p_value:.3g}"),
        ("P(treatment higher)", f"{p_better:.4f}"),
        outcome.srm_row,
        (f"decision ({method})", outcome.decision),
    ]
    return result, rows

"""Rich rendering of one experiment for `mlrollouts status`: what an on-call engineer reads first."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

PHASE_STYLE = {
    "Promoted": "bold green",
    "RolledBack": "bold red",
    "Invalid": "bold red",
    "Paused": "bold yellow",
    "Inconclusive": "bold yellow",
}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render_experiment(obj: dict[str, Any]) -> Panel:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    steps = (spec.get("canary") or {}).get("steps") or []
    step = f" · step {status.get('step', 0) + 1}/{len(steps)}" if steps and status.get("step") is not None else ""
    title = Text.assemble(
        (f"{meta.get('name')} ", "bold"),
        f"({meta.get('namespace')}) · {spec.get('strategy')} · ",
        (phase, PHASE_STYLE.get(phase, "bold cyan")),
        step,
    )
    parts: list[Any] = []
    if status.get("reason") or status.get("message"):
        parts.append(Text(f"{status.get('reason') or ''}: {status.get('message') or ''}".strip(": ")))
    weights = status.get("weights") or {}
    if weights:
        parts.append(Text("Weights: " + " | ".join(f"{v} {w} %" for v, w in weights.items())))
    parts.extend(_samples(status, spec))
    plan = status.get("plan") or {}
    if plan:
        parts.append(
            Text(
                f"Plan: {plan.get('requiredPerVariant', '—')} per variant"
                f" · ETA {plan.get('estimatedCompletion') or 'unknown (no traffic yet)'}"
            )
        )
    parts.extend(_analysis(status.get("analysis") or {}))
    parts.extend(_evidence(status))
    parts.extend(_guardrails(status.get("guardrails") or []))
    parts.extend(_gates(status.get("webhooks") or []))
    parts.extend(_conditions(status.get("conditions") or []))
    parts.extend(_history(status.get("history") or []))
    return Panel(Group(*parts) if parts else Text("no status yet: is the operator running?"), title=title)


def _samples(status: dict[str, Any], spec: dict[str, Any]) -> list[Any]:
    samples = status.get("samples") or {}
    if not samples:
        return []
    table = Table(title="Samples", title_justify="left")
    mean = (spec.get("analysis") or {}).get("primaryMetric", {}).get("type") == "mean"
    for column in ("variant", "count", "mean") if mean else ("variant", "trials", "successes", "rate"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "variant", "type"))
    for variant, s in samples.items():
        if mean:
            count = s.get("count") or 0
            table.add_row(variant, _fmt(count), _fmt(s.get("sum", 0) / count if count else None))
        else:
            trials = s.get("trials") or 0
            rate = s.get("successes", 0) / trials if trials else None
            table.add_row(variant, _fmt(trials), _fmt(s.get("successes")), _fmt(rate))
    return [table]


def _analysis(analysis: dict[str, Any]) -> list[Any]:
    if not analysis:
        return []
    ci = analysis.get("confidenceInterval")
    line = (
        f"Decision: {analysis.get('decision') or '—'} · p = {_fmt(analysis.get('pValue'))}"
        f" · CI {('[' + ', '.join(_fmt(x) for x in ci) + ']') if ci else '—'}"
        f" · lift {_fmt(analysis.get('relativeLift'))} · P(better) {_fmt(analysis.get('probabilityBetter'))}"
        f" · SRM p {_fmt(analysis.get('srmPValue'))}"
    )
    out: list[Any] = [Text(line)]
    if analysis.get("reason"):
        out.append(Text(f"Reason: {analysis['reason']}", style="italic"))
    return out


def _bound(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else f"{value:+.4g}"


def _evidence(status: dict[str, Any]) -> list[Any]:
    """The confidence sequence per challenger: what a verdict's direction comes from."""
    evidence = status.get("evidence") or {}
    if not evidence:
        return []
    table = Table(title="Evidence (always valid, challenger − champion)", title_justify="left")
    for column in ("challenger", "p", "confidence sequence", "looks", "restarts", "epochs"):
        table.add_column(column, overflow="fold", no_wrap=column == "challenger")
    for name, e in evidence.items():
        low, high = (e.get("confidenceInterval") or [None, None])[:2]
        table.add_row(
            name,
            _fmt(e.get("pValue")),
            f"[{_bound(low, '-inf')}, {_bound(high, '+inf')}]",
            str(e.get("looks", 0)),
            str(e.get("restarts", 0)),
            str((e.get("epochs") or {}).get("epochs", 0) + 1),
        )
    return [table]


def _guardrail_state(g: dict[str, Any]) -> str:
    """Threshold: consecutive failing checks; ratio: the verdict, the step's counts and the test's p."""
    if g.get("verdict") is None:
        return str(g.get("consecutiveFailures", 0))
    counts = f"{_fmt(g.get('bad'))}/{_fmt(g.get('total'))} this step"
    evidence = f"share >= {_fmt(g.get('lowerBound'))}, p {_fmt(g.get('pValue'))}, alpha {_fmt(g.get('alpha'))}"
    cleared = "" if g.get("cleared") is not False else f"; breach not yet ruled out: {g.get('uncleared')}"
    return f"{g['verdict']} ({counts}, {evidence}{cleared})"


def _guardrails(guardrails: list[dict[str, Any]]) -> list[Any]:
    if not guardrails:
        return []
    table = Table(title="Guardrails", title_justify="left")
    for column in ("name", "variant", "value", "champion", "threshold", "failures / test", "healthy"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "variant", "type"))
    for g in guardrails:
        healthy = g.get("healthy", True)
        table.add_row(
            g.get("name", ""),
            g.get("variant") or "—",
            _fmt(g.get("value")),
            _fmt(g.get("championValue")),
            g.get("threshold") or "—",
            _guardrail_state(g),
            Text("yes" if healthy else "NO", style="green" if healthy else "bold red"),
        )
    return [table]


def _gates(webhooks: list[dict[str, Any]]) -> list[Any]:
    """The last answer of each spec.webhooks gate: why a preStart or confirmPromotion still holds."""
    if not webhooks:
        return []
    table = Table(title="Gates (spec.webhooks)", title_justify="left")
    for column in ("name", "type", "result", "code", "attempts", "last called", "message"):
        table.add_column(column, overflow="fold")
    for w in webhooks:
        passed = w.get("phase") == "Passed"
        table.add_row(
            w.get("name", ""),
            w.get("type", ""),
            Text(w.get("phase", "—"), style="green" if passed else "bold red"),
            str(w.get("code") or "—"),
            str(w.get("attempts", 0)),
            str(w.get("lastCalledAt") or "—"),
            w.get("message") or "",
        )
    return [table]


def _conditions(conditions: list[dict[str, Any]]) -> list[Any]:
    if not conditions:
        return []
    table = Table(title="Conditions", title_justify="left")
    for column in ("type", "status", "reason", "message"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "variant", "type"))
    for c in conditions:
        table.add_row(c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", ""))
    return [table]


def _history(history: list[dict[str, Any]], last: int = 10) -> list[Any]:
    if not history:
        return []
    table = Table(title=f"History (last {min(last, len(history))} of {len(history)})", title_justify="left")
    for column in ("time", "action", "from", "to", "reason"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "variant", "type"))
    for h in history[-last:]:
        table.add_row(
            h.get("time", ""), h.get("action", ""), h.get("from") or "", h.get("to") or "", h.get("reason", "")
        )
    return [table]


def summary_row(obj: dict[str, Any]) -> dict[str, Any]:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    analysis = status.get("analysis") or {}
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "strategy": spec.get("strategy"),
        "phase": status.get("phase") or "Pending",
        "weights": status.get("weights") or {},
        "decision": analysis.get("decision"),
        "pValue": analysis.get("pValue"),
        "probabilityBetter": analysis.get("probabilityBetter"),
    }

"""Draw the report's figures (matplotlib, Agg) and the HTML page that embeds them as base64 PNGs."""

from __future__ import annotations

import base64
import html
import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mlrollouts.demo.report import ReportData, wilson_interval

FIGSIZE = (9.0, 3.6)
DPI = 110


def _finish(figure: Any, axes: Any, title: str, ylabel: str, path: pathlib.Path) -> pathlib.Path:
    axes.set_title(title)
    axes.set_xlabel("seconds since the experiment was applied")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _no_data(axes: Any) -> None:
    axes.text(0.5, 0.5, "no data in Prometheus for this panel", ha="center", va="center", transform=axes.transAxes)


def champion_share(data: ReportData) -> tuple[str, list[float], list[float]] | None:
    """The operator exports challengers only (the alerts rely on it); the champion holds the rest."""
    champion = ((data.experiment.get("spec") or {}).get("champion") or {}).get("name")
    if not champion or not data.weights:
        return None
    times = sorted({t for series in data.weights for t in series.times})
    latest = {series.label: dict(zip(series.times, series.values, strict=True)) for series in data.weights}
    shares, current = [], dict.fromkeys(latest, 0.0)
    for t in times:
        for label, values in latest.items():
            current[label] = values.get(t, current[label])
        shares.append(100.0 - sum(current.values()))
    return champion, times, shares


def plot_weights(data: ReportData, path: pathlib.Path) -> pathlib.Path:
    figure, axes = plt.subplots(figsize=FIGSIZE)
    champion = champion_share(data)
    if champion is not None:
        name, times, shares = champion
        axes.step(times, shares, where="post", label=f"{name} (champion)", linestyle="--")
    for series in data.weights:
        axes.step(series.times, series.values, where="post", label=series.label)
    if not data.weights:
        _no_data(axes)
    axes.set_ylim(-2, 102)
    return _finish(figure, axes, "Traffic weight per variant", "percent", path)


def plot_primary(data: ReportData, path: pathlib.Path) -> pathlib.Path:
    figure, axes = plt.subplots(figsize=FIGSIZE)
    metric = (data.experiment.get("spec") or {}).get("analysis", {}).get("primaryMetric", {}).get("name", "metric")
    for successes, trials in data.retention:
        times, rates, lows, highs = [], [], [], []
        for t, s, n in zip(trials.times, successes.values, trials.values, strict=False):
            if n >= 1:
                low, high = wilson_interval(s, n)
                times.append(t)
                rates.append(s / n)
                lows.append(low)
                highs.append(high)
        if times:
            (line,) = axes.plot(times, rates, label=f"{trials.label} (n={int(trials.values[-1])})")
            axes.fill_between(times, lows, highs, alpha=0.2, color=line.get_color())
    if not data.retention:
        _no_data(axes)
    return _finish(figure, axes, f"{metric} per variant since the start, with 95 % Wilson bands", metric, path)


def plot_statistics(data: ReportData, path: pathlib.Path) -> pathlib.Path:
    """p-value on a log axis (always-valid p-values fall by orders of magnitude), P(better) on a linear one."""
    figure, axes = plt.subplots(figsize=FIGSIZE)
    statistics = (data.experiment.get("spec") or {}).get("analysis", {}).get("statistics") or {}
    p_value, better = data.p_value, data.probability_better
    if p_value is not None and p_value.values:
        axes.plot(p_value.times, [max(v, 1e-16) for v in p_value.values], label=p_value.label)
        axes.axhline(statistics.get("alpha", 0.05), color="grey", linestyle="--", label="alpha")
        axes.set_yscale("log")
        axes.set_ylim(top=1.5)
    if better is not None and better.values:
        right = axes.twinx() if p_value is not None and p_value.values else axes
        right.plot(better.times, better.values, color="tab:green", label=better.label)
        right.axhline(_probability_threshold(data), color="green", linestyle=":", label="P(better) threshold")
        right.set_ylim(-0.02, 1.02)
        right.set_ylabel("P(better)")
        if right is not axes:
            right.legend(loc="lower right", fontsize="small")
    if (p_value is None or not p_value.values) and (better is None or not better.values):
        _no_data(axes)
    ylabel = "p-value (log)" if p_value is not None and p_value.values else "P(better)"
    return _finish(figure, axes, "Evidence over time (mlrollouts_p_value, mlrollouts_probability_better)", ylabel, path)


def plot_confidence(data: ReportData, path: pathlib.Path) -> pathlib.Path | None:
    """The running intersection a verdict's direction comes from: worse only when it lies below zero."""
    if not data.confidence:
        return None
    figure, axes = plt.subplots(figsize=FIGSIZE)
    colours: dict[str, Any] = {}
    for series, bound in data.confidence:
        style = {"color": colours[series.label]} if series.label in colours else {}
        (line,) = axes.plot(
            series.times,
            series.values,
            linestyle="-" if bound == "lower" else "--",
            label=f"{series.label} {bound}",
            **style,
        )
        colours.setdefault(series.label, line.get_color())
    axes.axhline(0.0, color="grey", linewidth=1)
    title = "Always-valid confidence sequence of challenger − champion (mlrollouts_confidence_bound)"
    return _finish(figure, axes, title, "difference", path)


def _probability_threshold(data: ReportData) -> float:
    spec = data.experiment.get("spec") or {}
    if spec.get("strategy") == "bandit":
        return float((spec.get("bandit") or {}).get("promoteThreshold", 0.95))
    return float((spec.get("analysis", {}).get("statistics") or {}).get("probabilityThreshold", 0.95))


def plot_guardrails(data: ReportData, path: pathlib.Path) -> pathlib.Path | None:
    if not data.guardrails:
        return None
    figure, axes_list = plt.subplots(
        len(data.guardrails), 1, figsize=(FIGSIZE[0], 3.0 * len(data.guardrails)), squeeze=False
    )
    champion = ((data.experiment.get("spec") or {}).get("champion") or {}).get("name")
    for axes, guardrail in zip(axes_list[:, 0], data.guardrails, strict=True):
        for series in guardrail.by_variant:
            axes.plot(series.times, series.values, label=series.label)
            if series.label == champion:
                for key, offset in (("maxIncrease", True), ("maxRatio", False)):
                    if key in guardrail.bounds:
                        bound = guardrail.bounds[key]
                        limit = [v + bound if offset else v * bound for v in series.values]
                        axes.plot(series.times, limit, color="red", linestyle=":", label=f"champion {key} {bound:g}")
        for key in ("max", "min"):
            if key in guardrail.bounds:
                axes.axhline(
                    guardrail.bounds[key], color="red", linestyle="--", label=f"{key} {guardrail.bounds[key]:g}"
                )
        if not guardrail.by_variant:
            _no_data(axes)
        axes.set_title(f"Guardrail {guardrail.name}")
        axes.set_ylabel("value")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize="small")
    axes_list[-1, 0].set_xlabel("seconds since the experiment was applied")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def render_plots(data: ReportData, out_dir: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    images = [
        ("Traffic weights", plot_weights(data, out_dir / "weights.png")),
        ("Primary metric", plot_primary(data, out_dir / "primary-metric.png")),
        ("p-value and P(better)", plot_statistics(data, out_dir / "statistics.png")),
    ]
    confidence = plot_confidence(data, out_dir / "confidence.png")
    if confidence is not None:
        images.append(("Confidence sequence", confidence))
    guardrails = plot_guardrails(data, out_dir / "guardrails.png")
    if guardrails is not None:
        images.append(("Guardrails vs thresholds", guardrails))
    return images


def render_html(data: ReportData, images: list[tuple[str, pathlib.Path]]) -> str:
    status = data.experiment.get("status") or {}
    analysis = status.get("analysis") or {}
    e = html.escape
    summary = [
        ("Phase", status.get("phase")),
        ("Reason", f"{status.get('reason') or ''}: {status.get('message') or ''}".strip(": ")),
        ("Winner", status.get("winner")),
        ("Weights", ", ".join(f"{k} {v} %" for k, v in (status.get("weights") or {}).items())),
        ("Decision", f"{analysis.get('decision') or ''}: {analysis.get('reason') or ''}".strip(": ")),
        ("p-value", analysis.get("pValue")),
        ("P(better)", analysis.get("probabilityBetter")),
    ]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in summary if v not in (None, ""))
    history = "".join(
        f"<tr><td>{e(str(h.get('time')))}</td><td>{e(str(h.get('action')))}</td><td>{e(str(h.get('from') or ''))}</td>"
        f"<td>{e(str(h.get('to') or ''))}</td><td>{e(str(h.get('reason') or ''))}</td></tr>"
        for h in status.get("history") or []
    )
    figures = "".join(
        f'<h2>{e(title)}</h2><img alt="{e(title)}" title="{e(path.name)}" '
        f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode("ascii")}">'
        for title, path in images
    )
    problems = "".join(f"<li><code>{e(p)}</code></li>" for p in data.problems)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>mlrollouts report: {e(data.name)}</title><style>"
        "body{font-family:sans-serif;max-width:1040px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;"
        "vertical-align:top}img{max-width:100%}</style></head><body>"
        f"<h1>Experiment {e(data.name)} ({e(str((data.experiment.get('spec') or {}).get('strategy')))})</h1>"
        f"<table>{rows}</table>{figures}"
        f"<h2>History</h2><table><tr><th>time</th><th>action</th><th>from</th><th>to</th><th>reason</th></tr>"
        f"{history}</table>"
        + (f"<h2>Queries without data</h2><ul>{problems}</ul>" if problems else "")
        + "</body></html>"
    )

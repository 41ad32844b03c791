"""The experiment report: Prometheus range queries plus the experiment's status, drawn as PNGs and one HTML.

Sources: the operator's gauges (mlrollouts_challenger_weight, mlrollouts_p_value,
mlrollouts_probability_better), the spec's own sample and guardrail queries rendered per variant (so the
report shows what the engine saw), and status (phase, reason, history). Raw-counter sample queries are
turned into counts since the start with the baselines the engine kept in status.counters.
"""

from __future__ import annotations

import logging
import math
import pathlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from mlrollouts.api import SpecError, parse_experiment
from mlrollouts.api.guardrails import Guardrail, count_key
from mlrollouts.metrics.templates import QueryTemplate, query_templates, render, uses_window, variant_values

log = logging.getLogger(__name__)
MAX_POINTS = 400


@dataclass
class Series:
    label: str
    times: list[float] = field(default_factory=list)
    """Seconds since the report's start."""
    values: list[float] = field(default_factory=list)


@dataclass
class GuardrailSeries:
    name: str
    bounds: dict[str, float]
    """The guardrail's bounds that are set: max, min, maxIncrease, maxRatio."""
    by_variant: list[Series]


@dataclass
class ReportData:
    experiment: dict[str, Any]
    start: float
    end: float
    weights: list[Series] = field(default_factory=list)
    retention: list[tuple[Series, Series]] = field(default_factory=list)
    """Per variant: (successes, trials) since the start."""
    p_value: Series | None = None
    probability_better: Series | None = None
    confidence: list[tuple[Series, str]] = field(default_factory=list)
    """Confidence-sequence bounds per challenger: (series labelled by variant, "lower" | "upper")."""
    guardrails: list[GuardrailSeries] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Queries that failed or returned nothing, so a blank panel is explained."""

    @property
    def name(self) -> str:
        return str(self.experiment.get("metadata", {}).get("name"))


def wilson_interval(successes: float, trials: float, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (stays inside [0, 1], sane at small n)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


class RangeReader:
    def __init__(self, address: str, start: float, end: float) -> None:
        self.client = httpx.Client(base_url=address.rstrip("/"), timeout=10.0)
        self.start, self.end = start, end
        self.step = max(1.0, math.ceil((end - start) / MAX_POINTS))
        self.problems: list[str] = []

    def series(self, promql: str, label_key: str | None = None) -> list[Series]:
        params = {"query": promql, "start": self.start, "end": self.end, "step": self.step}
        try:
            response = self.client.get("/api/v1/query_range", params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            self.problems.append(f"{promql}: {error!r}")
            return []
        if body.get("status") != "success":
            self.problems.append(f"{promql}: {body.get('error', response.text[:200])}")
            return []
        found = []
        for result in body["data"]["result"]:
            points = [(float(t) - self.start, float(v)) for t, v in result["values"] if math.isfinite(float(v))]
            label = result["metric"].get(label_key, promql) if label_key else promql
            found.append(Series(label, [t for t, _ in points], [v for _, v in points]))
        if not found:
            self.problems.append(f"{promql}: no data")
        return found

    def one(self, promql: str, label: str, expected: bool = True) -> Series | None:
        """The first series; `expected=False` means no data is normal (e.g. P(better) of a canary)."""
        found = self.series(promql)
        if not found and not expected:
            self.problems.pop()
        if found:
            found[0].label = label
        return found[0] if found else None

    def close(self) -> None:
        self.client.close()


def collect(prometheus: str, experiment: dict[str, Any], start: float, end: float) -> ReportData:
    """Read everything the report draws; a failing query becomes a note in `problems`, never an exception."""
    data = ReportData(experiment, start, end)
    meta, status = experiment.get("metadata", {}), experiment.get("status") or {}
    selector = f'namespace="{meta.get("namespace")}",experiment="{meta.get("name")}"'
    reader = RangeReader(prometheus, start, end)
    try:
        data.weights = reader.series(f"mlrollouts_challenger_weight{{{selector}}}", "variant")
        data.p_value = reader.one(f"mlrollouts_p_value{{{selector}}}", "p-value", expected=False)
        data.probability_better = reader.one(
            f"mlrollouts_probability_better{{{selector}}}", "P(better)", expected=False
        )
        for bound in ("lower", "upper"):
            query = f'mlrollouts_confidence_bound{{{selector},bound="{bound}"}}'
            data.confidence.extend((series, bound) for series in reader.series(query, "variant"))
        try:
            model = parse_experiment(experiment)
        except SpecError as error:
            data.problems.append(f"spec not readable, no per-variant panels: {error}")
            return data
        now = datetime.fromtimestamp(end, UTC)
        templates = query_templates(model.spec)
        for variant in model.spec.variant_names:
            values = variant_values(model, variant, now)
            rendered = {t.name: render(t.text, values, t.field) for t in templates}
            if model.spec.analysis.primary_metric.type == "proportion":
                counters = (status.get("counters") or {}).get(variant) or {}
                raw = {t.name: not uses_window(t.text) for t in templates}
                pair = [
                    _since_start(reader.one(rendered[q], variant), counters.get(q))
                    if raw[q]
                    else reader.one(rendered[q], variant)
                    for q in ("successes", "trials")
                ]
                if pair[0] is not None and pair[1] is not None:
                    data.retention.append((pair[0], pair[1]))
        for guardrail in model.spec.analysis.guardrails:
            series = []
            for variant in model.spec.variant_names:
                found = reader.one(
                    _guardrail_promql(templates, guardrail, variant_values(model, variant, now)), variant
                )
                if found is not None:
                    series.append(found)
            bounds = {
                key: value
                for key, value in (
                    ("max", guardrail.max),
                    ("min", guardrail.min),
                    ("maxIncrease", guardrail.max_increase),
                    ("maxRatio", guardrail.max_ratio),
                )
                if value is not None
            }
            data.guardrails.append(GuardrailSeries(guardrail.name, bounds, series))
    finally:
        data.problems.extend(reader.problems)
        reader.close()
    return data


def _guardrail_promql(templates: list[QueryTemplate], guardrail: Guardrail, values: dict[str, str]) -> str:
    """The plotted value: a threshold guardrail's query; a ratio guardrail's bad / total (the share so far)."""
    if guardrail.kind == "threshold":
        template = next(t for t in templates if t.kind == "guardrail" and t.name == guardrail.name)
        return render(template.text, values, template.field)
    bad, total = (next(t for t in templates if t.name == count_key(guardrail.name, part)) for part in ("bad", "total"))
    return f"({render(bad.text, values, bad.field)}) / ({render(total.text, values, total.field)})"


def _since_start(series: Series | None, counter: dict[str, float] | None) -> Series | None:
    """Raw counter -> count since the experiment's baseline (or since the first point without one)."""
    if series is None or not series.values:
        return series
    baseline = float(counter["baseline"]) if counter and "baseline" in counter else series.values[0]
    return Series(series.label, series.times, [max(0.0, v - baseline) for v in series.values])


def write(data: ReportData, out_dir: pathlib.Path) -> pathlib.Path:
    """PNG files and report.html (PNGs embedded as base64) in `out_dir`; returns the HTML path."""
    from mlrollouts.demo.report_render import render_html, render_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    images = render_plots(data, out_dir)
    html = out_dir / "report.html"
    html.write_text(render_html(data, images), encoding="utf-8")
    log.info("report written path=%s images=%d", html, len(images))
    return html

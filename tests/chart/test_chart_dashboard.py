"""The Grafana dashboard is valid JSON whose every query parses as PromQL once variables are substituted."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART_DIR

DASHBOARD = CHART_DIR / "files" / "dashboard.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# What Grafana would put in place of each variable at query time.
SUBSTITUTIONS = {"$__rate_interval": "5m", "$window": "1d", "$namespace": "ml", "$experiment": "churn-v3"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def substituted(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown variable left in {expr!r}"
    return expr


def panel_queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_has_the_panels_an_on_call_engineer_needs() -> None:
    titles = {p["title"] for p in dashboard()["panels"]}
    assert {
        "Experiments",
        "Configured weights",
        "Observed traffic share",
        "Latency quantiles",
        "Error rate",
        "Primary metric (success rate, 95% band)",
        "p-value, P(better), SRM p",
    } <= titles


def test_templating_offers_namespace_and_experiment() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "experiment"} <= set(variables)
    assert "$namespace" in variables["experiment"]["query"]["query"]


def test_panel_ids_are_unique_and_queries_use_the_variables() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    # Only the operator-wide series (phase counts, reconcile durations) ignore the selected experiment.
    unscoped = [e for _, e in panel_queries() if not re.search(r"\$(experiment|namespace)", e)]
    assert unscoped == [
        "max by (phase) (mlrollouts_experiments)",
        "histogram_quantile(0.95, sum by (le, result) (rate(mlrollouts_reconcile_duration_seconds_bucket"
        "[$__rate_interval])))",
    ]


@pytest.mark.integration  # runs promtool
def test_every_panel_query_parses(tmp_path: Path) -> None:
    queries = panel_queries()
    assert len(queries) >= 15
    rules = [{"record": f"dashboard:query_{i}", "expr": substituted(expr)} for i, (_, expr) in enumerate(queries)]
    rule_file = tmp_path / "dashboard.rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout

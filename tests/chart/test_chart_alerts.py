"""The alert rules are valid Prometheus rules, fire on broken experiments only, and ship in the chart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import CHART_DIR, EVERYTHING_ON, of_kind, render

RULES = CHART_DIR / "files" / "alerts.rules.yaml"
UNIT_TESTS = sorted((Path(__file__).parent / "data").glob("*.test.yaml"))
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


# promtool runs as a subprocess (installed by `make install`).
pytestmark = pytest.mark.integration


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_rules_passes() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 16 rules found" in result.stdout


def test_promtool_check_rules_catches_a_broken_expression(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text(RULES.read_text().replace("min by (namespace, experiment)", "min by (namespace, experiment", 1))
    result = promtool("check", "rules", broken)
    assert result.returncode != 0


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda p: p.name)
def test_each_alert_fires_on_a_synthetic_series_and_not_on_a_healthy_one(unit_test: Path) -> None:
    result = promtool("test", "rules", unit_test)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested = set()
    for unit_test in UNIT_TESTS:
        for case in yaml.safe_load(unit_test.read_text())["tests"]:
            tested |= {t["alertname"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    assert alerts == tested


def test_prometheus_rule_embeds_the_rule_file_unchanged() -> None:
    (rule,) = of_kind(render(EVERYTHING_ON), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())

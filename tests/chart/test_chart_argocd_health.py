"""The Argo CD health script maps each experiment phase to the health an Application should show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml
from chart_support import CHART_DIR

HEALTH_LUA = CHART_DIR / "argocd" / "health.lua"
FIXTURES = yaml.safe_load((Path(__file__).parent / "data" / "argocd" / "health-fixtures.yaml").read_text())
PHASES = ["Pending", "Shadowing", "Progressing", "Paused", "Promoted", "RolledBack", "Inconclusive", "Invalid"]


def run_health_check(obj: dict[str, Any]) -> dict[str, Any]:
    """Run the script the way Argo CD does: `obj` is a global table and the chunk returns the result."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return dict(result.items())


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["name"] for f in FIXTURES])
def test_health_of_status_fixture(fixture: dict[str, Any]) -> None:
    assert run_health_check(fixture["object"]) == fixture["expect"]


def test_every_phase_is_covered_by_a_fixture() -> None:
    covered = {f["object"].get("status", {}).get("phase") for f in FIXTURES}
    assert set(PHASES) <= covered


def test_only_statuses_argo_cd_knows_are_returned() -> None:
    known = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
    assert {run_health_check(f["object"])["status"] for f in FIXTURES} <= known

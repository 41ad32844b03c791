"""Each demo scenario end to end with --fast timings: real model servers, gateway, operator, Prometheus.

Checks what a person running `make demo` would look at: the final phase (and reason or winner), the
report files, and that no process the demo started is left running.
"""

from __future__ import annotations

import base64
import pathlib
import re
import time
from collections.abc import Callable

import pytest

from mlrollouts.cli.main import main
from mlrollouts.demo.orchestrator import DemoOptions, Snapshot, run_demo
from mlrollouts.demo.scenarios import SCENARIOS
from mlrollouts.localstack import binaries

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
# Failure budgets, not speed targets: a --fast scenario ends in about a minute, but a loaded CI machine (load
# average 20-30 on 2 cores) starves the traffic generator and the bandit then needs minutes to gather its samples.
BUDGET_S = 420
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RATE = 100.0  # requests per second: enough samples for --fast, and less CPU on a busy CI machine


def leftover_processes(run_dir: pathlib.Path) -> list[str]:
    """Command lines of live processes that mention the run folder (every child the demo starts does)."""
    found = []
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(run_dir) in text:
            found.append(text)
    return found


def check_report(html_path: pathlib.Path) -> None:
    pngs = sorted(html_path.parent.glob("*.png"))
    assert {p.name for p in pngs} >= {"weights.png", "primary-metric.png", "statistics.png", "guardrails.png"}
    html = html_path.read_text()
    embedded = re.findall(r'title="([^"]+\.png)" src="data:image/png;base64,([^"]+)"', html)
    assert sorted(name for name, _ in embedded) == [p.name for p in pngs]
    for name, encoded in embedded:
        data = base64.b64decode(encoded)
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
        assert data == (html_path.parent / name).read_bytes()


def reporter(run_dir: pathlib.Path, name: str, out: pathlib.Path, codes: list[int]) -> Callable[[Snapshot], None]:
    """A progress callback that runs `mlrollouts report NAME` once against the running stack."""

    def report_once(snapshot: Snapshot) -> None:
        status = (snapshot.experiment or {}).get("status") or {}
        if not codes and status.get("phase") == "Shadowing" and status.get("guardrails"):
            time.sleep(2.0)  # a few more scrapes
            codes.append(main(["report", name, "--kubeconfig", str(run_dir / "kubeconfig"), "--output", str(out)]))

    return report_once


@pytest.mark.parametrize("name", ["regression", "bandit", "shadow"])
def test_scenario_ends_as_its_rules_say(name: str, tmp_path: pathlib.Path) -> None:
    scenario = SCENARIOS[name]
    snapshots: list[Snapshot] = []
    codes: list[int] = []
    run_dir = tmp_path / name
    report_while_running = reporter(run_dir, "churn-v3-shadow", tmp_path / "report", codes)

    def show(snapshot: Snapshot) -> None:
        snapshots.append(snapshot)
        if name == "shadow":
            report_while_running(snapshot)

    result = run_demo(DemoOptions(scenario, run_dir, timeout=BUDGET_S, fast=True, rate=RATE), show)
    status = result.experiment["status"]
    assert result.expected, (status.get("phase"), status.get("reason"), status.get("message"))
    assert status["phase"] == scenario.expected_phase
    if name == "regression":
        assert status["reason"] == "GuardrailFailed" and "slow-requests of churn-v3" in status["message"]
        assert status["weights"] == {"churn-v2": 100, "churn-v3": 0}
    if name == "bandit":
        assert status["winner"] == "churn-v3"
        shares = [
            s.experiment["status"]["weights"]["churn-v3"] for s in snapshots if (s.experiment or {}).get("status")
        ]
        assert max(shares[:-1]) > 50, "Thompson sampling moved most traffic to the best arm before promoting it"
    if name == "shadow":
        assert status["weights"]["churn-v3"] == 0 and "ready for a canary" in status["message"]
        assert codes == [0], "mlrollouts report NAME works against the running stack"
        check_report(tmp_path / "report" / "report.html")
        assert "shadow-p95-latency" in (tmp_path / "report" / "report.html").read_text()
    assert [s.elapsed for s in snapshots] == sorted(s.elapsed for s in snapshots)
    assert result.report_html is not None
    check_report(result.report_html)
    assert leftover_processes(tmp_path / name) == []


def test_make_demo_default_scenario_promotes_through_the_cli(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A generous bound: on the real backend etcd and kube-apiserver share the (often loaded) CPU with the users.
    code = main(
        ["demo", "--fast", "--plain", "--timeout", str(BUDGET_S), "--rate", str(RATE), "--output", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    backend = "real kube-apiserver" if binaries.available() else "emulated"  # real whenever it is built
    assert out.splitlines()[0].startswith(f"mlrollouts demo: API server: {backend}"), out.splitlines()[0]
    assert "kubectl get mexp -w" in out and "KUBECONFIG=" in out
    assert "phase=Progressing step=0" in out  # plain progress lines, since pytest's stdout is no TTY
    assert "ended in phase Promoted (Promoted)" in out and "as expected" in out
    html = pathlib.Path(re.search(r"report: (\S+report\.html)", out).group(1))
    check_report(html)
    assert "advance" in html.read_text() and "churn-v3 promoted to 100%" in html.read_text()
    assert leftover_processes(tmp_path) == []

"""The report from synthetic data (figures, HTML) and the demo/report commands' usage errors."""

from __future__ import annotations

import base64
import pathlib

import pytest
from statsmodels.stats.proportion import proportion_confint

from mlrollouts.cli.main import main
from mlrollouts.demo.report import GuardrailSeries, ReportData, Series, wilson_interval, write
from mlrollouts.demo.scenarios import SCENARIOS


@pytest.mark.parametrize(("successes", "trials"), [(0, 10), (7, 10), (720, 1000), (1545, 8200), (50, 50)])
def test_wilson_interval_matches_statsmodels(successes: int, trials: int) -> None:
    expected = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    assert wilson_interval(successes, trials) == pytest.approx(expected, abs=1e-9)


def synthetic(experiment: dict) -> ReportData:
    times = [float(t) for t in range(0, 60, 2)]
    trials = [20.0 * (i + 1) for i in range(len(times))]
    return ReportData(
        experiment,
        0.0,
        60.0,
        weights=[Series("churn-v3", times, [5.0 if t < 20 else 25.0 if t < 40 else 100.0 for t in times])],
        retention=[
            (Series("churn-v2", times, [0.72 * n for n in trials]), Series("churn-v2", times, trials)),
            (Series("churn-v3", times, [0.78 * n for n in trials]), Series("churn-v3", times, trials)),
        ],
        p_value=Series("p-value", times, [max(0.01, 1 - t / 60) for t in times]),
        confidence=[
            (Series("churn-v3", times, [-0.2 + t / 200 for t in times]), "lower"),
            (Series("churn-v3", times, [0.3 - t / 300 for t in times]), "upper"),
        ],
        guardrails=[
            GuardrailSeries(
                "p95-latency",
                {"max": 0.075},
                [Series("churn-v2", times, [0.04] * len(times)), Series("churn-v3", times, [0.05] * len(times))],
            ),
            GuardrailSeries("error-rate", {"maxIncrease": 0.02}, []),
        ],
        problems=["sum(x): no data"],
    )


def test_report_embeds_every_figure_and_explains_empty_panels(tmp_path: pathlib.Path) -> None:
    experiment = SCENARIOS["better"].manifest("http://p:9090")
    experiment["status"] = {
        "phase": "Promoted",
        "reason": "Promoted",
        "message": "churn-v3 promoted to <100%>",
        "history": [{"time": "2026-01-01T00:00:00Z", "action": "advance", "from": "a", "to": "b", "reason": "ok"}],
    }
    html_path = write(synthetic(experiment), tmp_path / "out")
    html = html_path.read_text()
    for name in ("weights.png", "primary-metric.png", "statistics.png", "confidence.png", "guardrails.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
        assert base64.b64encode(data).decode() in html
    assert "churn-v3 promoted to &lt;100%&gt;" in html, "status text is escaped"
    assert "<td>advance</td>" in html and "sum(x): no data" in html


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["demo", "--scenario", "worse"], "--scenario"),
        (["demo", "--timeout", "0"], "--timeout"),
        (["demo", "--rate", "5000"], "--rate"),
        (["report", "x", "--prometheus", "localhost:9090"], "--prometheus"),
        (["report", "x", "--since", "-1"], "--since"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mlrollouts: error: {flag}: ") and err.count("\n") == 1


def test_report_without_a_cluster_says_so(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "churn", "--kubeconfig", str(tmp_path / "missing")]) == 1
    assert "cannot load kubeconfig" in capsys.readouterr().err


def test_the_champion_holds_what_the_challengers_do_not() -> None:
    from mlrollouts.demo.report_render import champion_share

    data = ReportData(
        {"metadata": {"name": "abn"}, "spec": {"champion": {"name": "churn-v2"}}},
        0.0,
        30.0,
        weights=[
            Series("churn-v3", [0.0, 10.0, 20.0], [10.0, 20.0, 30.0]),
            Series("churn-v4", [0.0, 20.0], [10.0, 0.0]),
        ],
    )
    assert champion_share(data) == ("churn-v2", [0.0, 10.0, 20.0], [80.0, 70.0, 70.0])

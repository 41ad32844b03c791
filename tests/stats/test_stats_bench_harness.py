"""The benchmark harness: discovery, --help, Markdown output, and a clear error for an unknown benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import harness

    return harness


def test_discovers_the_stats_benchmark(harness) -> None:
    assert "stats" in harness.available()


def test_markdown_table(harness) -> None:
    table = harness.BenchTable(title="T", columns=("a", "b"), rows=[("1", "x|y")], notes=("read me",))
    text = harness.to_markdown(table, "env")
    assert text.splitlines() == ["# T", "", "env", "", "| a | b |", "| --- | --- |", "| 1 | x\\|y |", "", "- read me"]


def test_rows_must_fit_the_columns(harness) -> None:
    with pytest.raises(ValueError, match="2 columns"):
        harness.BenchTable(title="T", columns=("a", "b"), rows=[("1",)])


def test_unknown_benchmark_is_refused(harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(["nope"]) == 2
    assert "unknown benchmark nope" in capsys.readouterr().err


def test_help_lists_every_benchmark_and_the_knobs_and_runs_nothing(harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in harness.available():
        assert f"  {name} " in text
    assert "capacity      Capacity of one replica: 3,000 experiments" in text
    assert "MLROLLOUTS_BENCH_CAPACITY" in text and "MLROLLOUTS_BENCH_BACKEND" in text


def test_an_unknown_option_is_refused_before_anything_runs(harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(["--capacity=10"]) == 2
    assert "unrecognized arguments: --capacity=10" in capsys.readouterr().err

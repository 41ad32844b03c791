"""The PromQL slips caught at load (by the operator and `mlrollouts validate` alike), and what is not one."""

from __future__ import annotations

import pytest

from mlrollouts.metrics.templates import promql_problem


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ('sum(rate(x{v="a"}[5m])', "unclosed '(' opened at character 4"),
        ('sum(rate(x{v="a"}[5m])))', "unbalanced ')' at character 24: nothing to close"),
        ('sum(x{v="a})', 'unterminated " string'),
        ("sum(x[5m)]", "unbalanced ')' at character 9: nothing to close"),
        ("histogram_quantile(0.95, sum by (le (rate(x[1m])))", "unclosed '(' opened at character 19"),
    ],
)
def test_unbalanced_queries_are_named(query: str, problem: str) -> None:
    assert promql_problem(query) == problem


@pytest.mark.parametrize(
    "query",
    [
        'sum(rate(x{path=~"/a(b|[c"}[5m]))',  # brackets inside a string are text
        r'sum(x{msg="say \"hi\" ("})',  # escaped quotes do not end the string
        "sum(x{path=~`\\d+(`})",  # raw strings have no escapes
        "sum(x) # a comment with ( unbalanced",
        "histogram_quantile(0.95, sum by (le) (rate(x_bucket{v='a'}[5m])))",
    ],
)
def test_valid_queries_pass(query: str) -> None:
    assert promql_problem(query) is None

"""An edited metric template (same spec, new queries) restarts the analysis visibly, like a spec change."""

from __future__ import annotations

from datetime import timedelta

from factories import CHALLENGER, CHAMPION, T0, make_spec, observe, started

from mlrollouts.engine import decide

COUNTS = {CHAMPION: (90, 900), CHALLENGER: (10, 100)}


def test_edited_metric_template_restarts_the_analysis_and_keeps_the_traffic():
    """Same spec and generation, new queries behind a templateRef: samples restart, weights stay, one Event."""
    spec = make_spec("canary")
    first = decide(spec, started(spec), observe(T0, COUNTS), T0, generation=1, queries_fingerprint="aaaa")
    assert first.status.queries_fingerprint == "aaaa"
    assert "QueriesChanged" not in [e.reason for e in first.events]
    later = T0 + timedelta(minutes=1)
    changed = decide(spec, first.status, observe(later, COUNTS), later, generation=1, queries_fingerprint="bbbb")
    assert changed.status.queries_fingerprint == "bbbb"
    assert changed.status.reason == "QueriesChanged" and changed.status.samples == {}
    assert changed.status.started_at == later
    assert changed.status.weights == first.status.weights
    assert [e.reason for e in changed.events] == ["QueriesChanged"]
    again = decide(spec, changed.status, observe(later, COUNTS), later, generation=1, queries_fingerprint="bbbb")
    assert "QueriesChanged" not in [e.reason for e in again.events]

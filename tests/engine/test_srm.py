"""Sample ratio mismatch pauses the experiment with the numbers; small or balanced counts do not."""

from __future__ import annotations

from factories import CHALLENGER, CHAMPION, SECOND, T0, make_spec, observe, started
from scipy import stats

from mlrollouts.engine import decide


def test_imbalanced_canary_step_pauses_with_counts_expected_percent_and_p():
    spec = make_spec("canary", block={"steps": [10, 50, 100]})
    counts = {CHAMPION: (850, 8500), CHALLENGER: (150, 1500)}  # 15 % where 10 % was asked
    decision = decide(spec, started(spec), observe(T0, counts), T0)
    status = decision.status
    expected_p = stats.chisquare([8500, 1500], [9000, 1000]).pvalue
    assert (status.phase, status.reason) == ("Paused", "SampleRatioMismatch")
    assert status.analysis.srm_p_value == expected_p
    assert "churn-v2 8500 (85% vs expected 90%)" in status.message
    assert "churn-v3 1500 (15% vs expected 10%)" in status.message
    assert f"p = {expected_p:.3g} < srmPValue 0.001" in status.message
    assert status.weights == {CHAMPION: 90, CHALLENGER: 10} and decision.actions == ()
    assert ("Warning", "SampleRatioMismatch") in [(e.type, e.reason) for e in decision.events]
    condition = {c.type: c for c in status.conditions}["SampleRatioHealthy"]
    assert (condition.status, condition.reason) == ("False", "SampleRatioMismatch")


def test_balanced_abn_split_is_healthy():
    spec = make_spec("abTest", challengers=2)
    counts = {CHAMPION: (100, 1020), CHALLENGER: (100, 990), SECOND: (100, 1000)}
    status = decide(spec, started(spec), observe(T0, counts), T0).status
    assert status.phase == "Progressing"
    assert status.analysis.srm_p_value > 0.5
    condition = {c.type: c for c in status.conditions}["SampleRatioHealthy"]
    assert condition.status == "True"


def test_too_few_expected_trials_are_not_judged():
    spec = make_spec("canary")
    counts = {CHAMPION: (1, 300), CHALLENGER: (1, 200)}  # 10 % expected of 500 is 50 < 100
    status = decide(spec, started(spec), observe(T0, counts), T0).status
    assert status.phase == "Progressing" and status.analysis.srm_p_value is None


def test_resume_after_mismatch_judges_only_new_trials():
    spec = make_spec("canary")
    paused = decide(spec, started(spec), observe(T0, {CHAMPION: (0, 8500), CHALLENGER: (0, 1500)}), T0).status
    resumed = decide(spec, paused, observe(T0, {}), T0, manual="resume").status
    later = {CHAMPION: (0, 8500 + 1800), CHALLENGER: (0, 1500 + 200)}
    status = decide(spec, resumed, observe(T0, later), T0).status
    assert status.phase == "Progressing"
    assert status.analysis.srm_p_value == stats.chisquare([1800, 200], [1800, 200]).pvalue

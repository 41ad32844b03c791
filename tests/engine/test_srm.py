"""Sample ratio mismatch pauses the experiment with the numbers; small, balanced or still-settling counts do not.

The SRM window opens two analysis intervals after the weights change (metrics lag routing), with the counts
of that moment as its baseline; these tests open it explicitly with `settled`.
"""

from __future__ import annotations

import math
from datetime import timedelta

from factories import CHALLENGER, CHAMPION, SECOND, T0, make_spec, observe, started

from mlrollouts.api import ModelExperimentSpec, ModelExperimentStatus
from mlrollouts.engine import decide
from mlrollouts.stats.srm import srm_log_bayes_factor

SETTLED = T0 + timedelta(minutes=2)  # two 1m intervals after the step started
LATER = SETTLED + timedelta(minutes=1)


def settled(spec: ModelExperimentSpec, status: ModelExperimentStatus, counts: dict) -> ModelExperimentStatus:
    """One tick that opens the SRM window with `counts` as its baseline."""
    status = decide(spec, status, observe(SETTLED, counts), SETTLED).status
    assert status.srm_window_samples, "the window should open two intervals after the step started"
    return status


def test_imbalanced_canary_step_pauses_with_counts_expected_percent_and_p():
    spec = make_spec("canary", block={"steps": [10, 50, 100]})
    status = settled(spec, started(spec), {CHAMPION: (0, 0), CHALLENGER: (0, 0)})
    first = decide(spec, status, observe(LATER, {CHAMPION: (425, 4250), CHALLENGER: (75, 750)}), LATER).status
    assert first.phase == "Progressing" and first.analysis.decision == "hold"  # one check is not enough
    assert first.srm_mismatches == 1 and "holding until the next check confirms it" in first.analysis.reason
    counts = {CHAMPION: (850, 8500), CHALLENGER: (150, 1500)}  # 15 % where 10 % was asked, again
    confirm = LATER + timedelta(minutes=1)
    decision = decide(spec, first, observe(confirm, counts), confirm)
    status = decision.status
    expected_p = math.exp(-srm_log_bayes_factor([8500, 1500], [90, 10]))
    assert (status.phase, status.reason) == ("Paused", "SampleRatioMismatch")
    assert status.analysis.srm_p_value == expected_p
    assert "churn-v2 8500 (85% vs expected 90%)" in status.message
    assert "churn-v3 1500 (15% vs expected 10%)" in status.message
    assert f"always-valid p = {expected_p:.3g} < srmPValue 0.001" in status.message
    assert status.weights == {CHAMPION: 90, CHALLENGER: 10} and decision.actions == ()
    assert ("Warning", "SampleRatioMismatch") in [(e.type, e.reason) for e in decision.events]
    condition = {c.type: c for c in status.conditions}["SampleRatioHealthy"]
    assert (condition.status, condition.reason) == ("False", "SampleRatioMismatch")


def test_a_skewed_read_that_corrects_itself_does_not_pause():
    """Two separate count queries can straddle a scrape; the next read catches up and the alarm clears."""
    spec = make_spec("canary", block={"steps": [10, 50, 100]})
    status = settled(spec, started(spec), {CHAMPION: (0, 0), CHALLENGER: (0, 0)})
    skewed = {CHAMPION: (0, 4000), CHALLENGER: (0, 700)}  # the champion's last scrape not yet counted
    status = decide(spec, status, observe(LATER, skewed), LATER).status
    assert status.srm_mismatches == 1 and status.phase == "Progressing"
    caught_up = LATER + timedelta(minutes=1)
    status = decide(spec, status, observe(caught_up, {CHAMPION: (0, 9000), CHALLENGER: (0, 1000)}), caught_up).status
    assert status.phase == "Progressing" and status.srm_mismatches == 0


def test_trials_from_before_the_new_split_showed_are_not_judged():
    """Right after a weight change the counts still follow the old split: that is lag, not a mismatch."""
    spec = make_spec("canary", block={"steps": [10, 50, 100]})
    lagging = T0 + timedelta(seconds=90)  # before the window opens
    status = decide(spec, started(spec), observe(lagging, {CHAMPION: (0, 9900), CHALLENGER: (0, 100)}), lagging)
    assert status.status.phase == "Progressing" and status.status.analysis.srm_p_value is None


def test_only_trials_after_the_window_opened_count():
    spec = make_spec("canary", block={"steps": [10, 50, 100]})
    status = settled(spec, started(spec), {CHAMPION: (0, 9900), CHALLENGER: (0, 100)})  # lag-skewed baseline
    counts = {CHAMPION: (0, 9900 + 1800), CHALLENGER: (0, 100 + 200)}  # 10 % since the window opened
    status = decide(spec, status, observe(LATER, counts), LATER).status
    assert status.phase == "Progressing"
    assert status.analysis.srm_p_value == min(1.0, math.exp(-srm_log_bayes_factor([1800, 200], [90, 10])))


def test_balanced_abn_split_is_healthy():
    spec = make_spec("abTest", challengers=2)
    zero = {CHAMPION: (0, 0), CHALLENGER: (0, 0), SECOND: (0, 0)}
    status = settled(spec, started(spec), zero)
    counts = {CHAMPION: (100, 1020), CHALLENGER: (100, 990), SECOND: (100, 1000)}
    status = decide(spec, status, observe(LATER, counts), LATER).status
    assert status.phase == "Progressing"
    assert status.analysis.srm_p_value == 1.0  # balanced counts: the alternative explains them no better
    condition = {c.type: c for c in status.conditions}["SampleRatioHealthy"]
    assert condition.status == "True"


def test_too_few_expected_trials_are_not_judged():
    spec = make_spec("canary")
    status = settled(spec, started(spec), {CHAMPION: (0, 0), CHALLENGER: (0, 0)})
    counts = {CHAMPION: (1, 300), CHALLENGER: (1, 200)}  # 10 % expected of 500 is 50 < 100
    status = decide(spec, status, observe(LATER, counts), LATER).status
    assert status.phase == "Progressing" and status.analysis.srm_p_value is None


def test_resume_after_mismatch_judges_only_new_trials():
    spec = make_spec("canary")
    status = settled(spec, started(spec), {CHAMPION: (0, 0), CHALLENGER: (0, 0)})
    first = decide(spec, status, observe(LATER, {CHAMPION: (0, 8500), CHALLENGER: (0, 1500)}), LATER).status
    paused = decide(spec, first, observe(LATER, {CHAMPION: (0, 8500), CHALLENGER: (0, 1500)}), LATER).status
    assert paused.reason == "SampleRatioMismatch"
    resumed = decide(spec, paused, observe(LATER, {}), LATER, manual="resume").status
    reopen = LATER + timedelta(minutes=2)
    status = decide(spec, resumed, observe(reopen, {CHAMPION: (0, 8500), CHALLENGER: (0, 1500)}), reopen).status
    later = reopen + timedelta(minutes=1)
    counts = {CHAMPION: (0, 8500 + 1800), CHALLENGER: (0, 1500 + 200)}
    status = decide(spec, status, observe(later, counts), later).status
    assert status.phase == "Progressing"
    assert status.analysis.srm_p_value == min(1.0, math.exp(-srm_log_bayes_factor([1800, 200], [90, 10])))

"""Sample-ratio mismatch and Holm's adjustment against scipy and statsmodels."""

from __future__ import annotations

import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mlrollouts.stats import SRM_ALARM_THRESHOLD, holm_adjust, srm_pvalue


def test_600_400_on_a_50_50_split_is_a_mismatch() -> None:
    p = srm_pvalue([600, 400], [50, 50])
    assert p == pytest.approx(stats.chisquare([600, 400]).pvalue, rel=1e-12)
    assert p == pytest.approx(2.54e-10, rel=1e-2)
    assert p < SRM_ALARM_THRESHOLD


def test_weights_are_proportions_in_any_unit() -> None:
    assert srm_pvalue([910, 95], [90, 10]) == pytest.approx(srm_pvalue([910, 95], [0.9, 0.1]), rel=1e-12)
    assert srm_pvalue([910, 95], [90, 10]) == pytest.approx(
        stats.chisquare([910, 95], [904.5, 100.5]).pvalue, rel=1e-12
    )
    assert srm_pvalue([910, 95], [90, 10]) > SRM_ALARM_THRESHOLD


def test_traffic_to_an_arm_weighted_zero_is_a_certain_mismatch() -> None:
    assert srm_pvalue([1000, 3], [100, 0]) == 0.0
    assert srm_pvalue([1000, 0, 980], [50, 0, 50]) == pytest.approx(stats.chisquare([1000, 980]).pvalue)
    assert srm_pvalue([0, 0], [50, 50]) == 1.0


def test_srm_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="one per arm"):
        srm_pvalue([1, 2, 3], [50, 50])


@pytest.mark.parametrize("pvalues", [[0.01, 0.04, 0.03], [0.2, 0.001, 0.5, 0.04], [0.9], [0.03, 0.03]])
def test_holm_matches_statsmodels(pvalues: list[float]) -> None:
    expected = multipletests(pvalues, method="holm")[1]
    assert holm_adjust(pvalues) == pytest.approx(list(expected), abs=1e-15)

"""Statistics for deciding experiments: pure functions, counts in, small frozen result objects out."""

from mlrollouts.stats.bandit import largest_remainder, prob_best, thompson_allocation
from mlrollouts.stats.bayesian import (
    BayesianResult,
    ExpectedLoss,
    bayesian_ab,
    expected_loss,
    lift_credible_interval,
    prob_b_beats_a,
    prob_greater,
)
from mlrollouts.stats.frequentist import (
    MeanStats,
    WelchResult,
    ZTestResult,
    effect_label,
    two_proportion_ztest,
    welch_ttest,
    welch_ttest_from_sums,
)
from mlrollouts.stats.multiple import holm_adjust
from mlrollouts.stats.planning import (
    plan_duration,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
    treatment_rate,
)
from mlrollouts.stats.sequential import (
    DEFAULT_RELATIVE_MDE,
    SequentialResult,
    SequentialState,
    Stratified,
    default_tau,
    harmonic_weight,
    msprt,
    msprt_pvalue,
    msprt_pvalue_means,
)
from mlrollouts.stats.srm import SRM_ALARM_THRESHOLD, srm_pvalue

__all__ = [
    "DEFAULT_RELATIVE_MDE",
    "SRM_ALARM_THRESHOLD",
    "BayesianResult",
    "ExpectedLoss",
    "MeanStats",
    "SequentialResult",
    "SequentialState",
    "Stratified",
    "WelchResult",
    "ZTestResult",
    "bayesian_ab",
    "default_tau",
    "effect_label",
    "expected_loss",
    "harmonic_weight",
    "holm_adjust",
    "largest_remainder",
    "lift_credible_interval",
    "msprt",
    "msprt_pvalue",
    "msprt_pvalue_means",
    "plan_duration",
    "power_proportions",
    "prob_b_beats_a",
    "prob_best",
    "prob_greater",
    "sample_size_means",
    "sample_size_proportions",
    "srm_pvalue",
    "thompson_allocation",
    "treatment_rate",
    "two_proportion_ztest",
    "welch_ttest",
    "welch_ttest_from_sums",
]

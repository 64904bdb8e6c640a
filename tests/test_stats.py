"""The statistics of the report's tables (benchmarks/reporting/stats.py): the confidence interval against
scipy's, the detectable difference against Cohen's tables and against a simulation. Seconds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from benchmarks.reporting.stats import ci_half_width, detectable_difference, pooled_std, t_test_power


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_interval_matches_scipy_t_interval(n):
    v = np.random.default_rng(n).normal(10.0, 2.0, n)
    lo, hi = stats.t.interval(0.95, n - 1, loc=v.mean(), scale=stats.sem(v))
    assert ci_half_width(float(v.std(ddof=1)), n) == pytest.approx((hi - lo) / 2, rel=1e-12)
    assert ci_half_width(1.0, 1) is None  # one seed: no interval


def test_pooled_std_weights_rows_by_degrees_of_freedom():
    assert pooled_std([1.0, 3.0], [2, 3]) == pytest.approx(math.sqrt((1 + 2 * 9) / 3))
    assert pooled_std([1.0], [1]) is None  # no row with two seeds


@pytest.mark.parametrize("n, d", [(64, 0.5), (26, 0.8), (17, 1.0)])
def test_detectable_difference_matches_cohens_table(n, d):
    """Cohen (1988), Table 2.4.1: two-sided alpha 0.05, power 0.80 needs n = 64, 26, 17 per group
    for d = 0.5, 0.8, 1.0; at those n the detectable difference in units of sd is d (n is rounded
    up there, so ours is a little smaller)."""
    found = detectable_difference(1.0, n)
    assert found <= d + 1e-9 and found == pytest.approx(d, abs=0.03)
    assert detectable_difference(2.5, n) == pytest.approx(2.5 * found, rel=1e-6)  # scales with sd


@pytest.mark.parametrize("n", [2, 3])
def test_detectable_difference_has_its_power_in_a_simulation(n):
    """At the detectable difference, simulated two-sample t-tests reject in 80% of trials; the
    normal approximation's smaller difference would have much less power at 2-4 df."""
    delta = detectable_difference(1.0, n)
    rng = np.random.default_rng(0)
    trials = 20_000
    a = rng.normal(0.0, 1.0, (trials, n))
    b = rng.normal(delta, 1.0, (trials, n))
    rejected = stats.ttest_ind(a, b, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.015)
    assert t_test_power(delta, 1.0, n) == pytest.approx(0.8, abs=1e-8)
    normal = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(2 / n)
    assert delta > 1.3 * normal  # 2-3 seeds: 30-100% above the normal approximation


def test_detectable_difference_needs_two_seeds():
    assert detectable_difference(1.0, 1) is None and detectable_difference(None, 3) is None
    assert detectable_difference(0.0, 3) == 0.0


def test_power_is_finite_where_scipys_noncentral_t_cdf_is_not():
    # scipy 1.17's nct.cdf(-4.30, 2, 8.85) is NaN; a table with 2 seeds and sd 7.72 hit it
    crit = stats.t.ppf(0.975, 2)
    assert math.isfinite(stats.nct.sf(crit, 2, -8.85))
    assert math.isfinite(t_test_power(68.41332372055177, 7.715878983424772, 2))
    assert detectable_difference(7.715878983424772, 2) > 0

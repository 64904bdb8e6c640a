"""Statistics over seeds for the report's tables: the half-width of a Student-t confidence
interval of a mean, the spread pooled over a table's rows, and the smallest difference between
two rows that their seeds can detect.

Bold and its companion mark: with 2-3 seeds a t-test has 1-4 degrees of freedom and little
power, so bolding every row a test cannot separate from the best would bold noisy rows far from
it. The table bolds only the best mean and marks "≈" each other row that a two-sided Welch
t-test (:func:`indistinguishable`) cannot tell from the best: a bold without ≈ companions is a
win the seeds support; a bold with them is not yet one. The detectable difference says how
large a gap the seeds could have shown.
"""
from __future__ import annotations

import math

from scipy import optimize, stats

LEVEL = 0.95   # confidence level of the intervals the tables print
ALPHA = 0.05   # two-sided significance level of the detectable difference
POWER = 0.8    # its power (Cohen's conventional 0.8)


def ci_half_width(std: float, n: int, level: float = LEVEL) -> float | None:
    """Half-width of the ``level`` confidence interval of a mean of ``n`` values with sample
    std ``std``: t_{(1+level)/2, n-1} * std / sqrt(n) (Student t with n - 1 degrees of freedom).
    None for fewer than two values (no spread to estimate)."""
    if n < 2 or std is None or not math.isfinite(std):
        return None
    return float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def pooled_std(stds: list[float], ns: list[int]) -> float | None:
    """The within-row spread pooled over rows: sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)), over
    the rows with at least two values and a spread above zero (a row whose seeds all give one
    value, as a collapsed generator's precision of 1, says nothing of the others' noise and
    would shrink the pool); None when no row is left."""
    pairs = [(s, n) for s, n in zip(stds, ns) if n >= 2 and s is not None and math.isfinite(s) and s > 0]
    dof = sum(n - 1 for _, n in pairs)
    if dof == 0:
        return None
    return math.sqrt(sum((n - 1) * s * s for s, n in pairs) / dof)


def t_test_power(delta: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided two-sample t-test (equal variances, n values per group) to detect a
    true difference ``delta`` between means when the values' std is ``sd``.

    Under the alternative the statistic follows a noncentral t with df = 2n - 2 and
    noncentrality delta / (sd * sqrt(2 / n)); the power is the probability that it falls
    outside +-t_{1 - alpha/2, df} (Cohen 1988, "Statistical Power Analysis for the Behavioral
    Sciences", ch. 2; the exact form, not the normal approximation, which overstates the power
    badly at a few degrees of freedom).
    """
    df = 2 * n - 2
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = delta / (sd * math.sqrt(2.0 / n))
    lower = stats.nct.cdf(-crit, df, nc)
    if not math.isfinite(lower):  # scipy's nct.cdf is NaN at some points deep in the tail (df 2,
        lower = stats.nct.sf(crit, df, -nc)  # nc near 8.85): the same probability by symmetry
    return float(stats.nct.sf(crit, df, nc) + lower)


def detectable_difference(sd: float | None, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest true difference between two rows of ``n`` seeds each that the two-sided
    two-sample t-test at ``alpha`` detects with probability ``power``, given the seeds' std
    ``sd`` (the table's pooled within-row spread). Solved for delta in
    t_test_power(delta) = power; the power grows monotonically with delta. None for fewer than
    two seeds or no spread."""
    if sd is None or n < 2 or not math.isfinite(sd):
        return None
    if sd == 0:
        return 0.0
    # the normal-approximation delta, (z_{1-a/2} + z_power) sd sqrt(2/n), is below the exact
    # one; the bracket widens until the power at its top exceeds the target
    lo, hi = 0.0, (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd * math.sqrt(2.0 / n)
    while t_test_power(hi, sd, n, alpha) < power:
        hi *= 2
    return float(optimize.brentq(lambda d: t_test_power(d, sd, n, alpha) - power, lo, hi, xtol=1e-10 * sd))



def indistinguishable(best: tuple[float, float | None, int], other: tuple[float, float | None, int],
                      alpha: float = ALPHA) -> bool | None:
    """Whether a two-sided Welch t-test (unequal variances; scipy.stats.ttest_ind_from_stats with
    equal_var=False) at ``alpha`` cannot tell the mean of ``other`` from the mean of ``best``,
    each given as (mean, sample std, number of seeds). None when either has fewer than two
    seeds (no test). Two rows without any spread differ exactly when their means differ."""
    (m1, s1, n1), (m2, s2, n2) = best, other
    if n1 < 2 or n2 < 2 or s1 is None or s2 is None or not (math.isfinite(s1) and math.isfinite(s2)):
        return None
    if s1 == 0 and s2 == 0:
        return m1 == m2
    p = stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue
    return bool(p >= alpha)

"""Statistics over seeds for the report's tables: the half-width of a Student-t confidence
interval of a mean, the spread pooled over a table's rows, and the smallest difference between
two rows that their seeds can detect.

Why not a test per cell: with 2-3 seeds a t-test has 1-4 degrees of freedom and almost no
power, so a rule "bold every row not significantly worse than the best" bolds noisy rows far
from the best. The table bolds only the best mean, prints each mean with its interval, and
states the detectable difference, so a reader can tell which gaps mean something.
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
    the rows with at least two values; None when no row has two."""
    pairs = [(s, n) for s, n in zip(stds, ns) if n >= 2 and s is not None and math.isfinite(s)]
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


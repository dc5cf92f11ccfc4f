"""The statistics of every verdict, in one place, on scipy where scipy has the routine.

Timings and per-token numbers (speed, perplexity):
- ``t_quantile``, ``mean_t_interval``: Student t interval for a mean (df = n - 1).
- ``paired_ratio``: speedups. Each repetition runs the dense and the compressed model back to
  back (ABBA), so its ratio cancels slow drift of the machine; the log makes the ratio
  symmetric (0.5x and 2x are equally far from 1x) and its mean a geometric mean. A t interval
  widens honestly at small n, where a percentile bootstrap of 3 samples can only return ratios
  of the values it happened to draw.

Counts (BBQ):
- ``wilson``: Wilson score interval for a binomial proportion.
- ``newcombe_paired``: interval for the difference of two paired proportions (Newcombe 1998,
  method 10: hybrid score interval built from the two Wilson intervals and the phi
  correlation; scipy has no paired-proportion interval).
- ``binom_cdf`` / ``binom_sf``: binomial tails (scipy.stats.binom).
- ``mcnemar_exact``: exact two-sided McNemar test on the discordant pairs (b, c):
  p = min(1, 2 * P[X <= min(b, c)]) with X ~ Binomial(b + c, 1/2).
- ``cohens_h``: 2 asin sqrt(p2) - 2 asin sqrt(p1).
- ``holm``: Holm step-down adjusted p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t; p in (0, 1), df >= 1."""
    if df < 1 or not 0 < p < 1:
        raise ValueError("need df >= 1 and 0 < p < 1")
    return float(stats.t.ppf(p, df))


def mean_t_interval(
    x: Sequence[float] | np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high) of a t interval for the mean; NaN bounds with fewer than 2 values."""
    a = np.asarray(x, dtype=np.float64)
    m = float(a.mean()) if a.size else math.nan
    if a.size < 2:
        return m, math.nan, math.nan
    se = float(a.std(ddof=1)) / math.sqrt(a.size)
    q = t_quantile(0.5 + level / 2, a.size - 1)
    return m, m - q * se, m + q * se


# -- group-sequential looks ------------------------------------------------------------------
def obf_spent(t: float, alpha: float) -> float:
    """Alpha spent by information fraction t (0 < t <= 1): the Lan-DeMets O'Brien-Fleming-type
    spending function ``2 * (1 - Phi(z_{1-alpha/2} / sqrt(t)))``. Group-sequential looks (BBQ
    items, speed repetitions) judge each interim look at this function's increment."""
    if t >= 1.0:
        return alpha
    return float(2.0 * stats.norm.sf(stats.norm.isf(alpha / 2.0) / math.sqrt(t)))


def look_levels(fractions: Sequence[float], alpha: float) -> list[float]:
    """The alpha each look may spend: the spending function's increments at the looks'
    information fractions (Bonferroni over looks, so valid whatever their correlation)."""
    out, before = [], 0.0
    for t in fractions:
        now = obf_spent(t, alpha)
        out.append(max(0.0, now - before))
        before = now
    return out


@dataclass(frozen=True)
class PairedRatio:
    """Geometric mean of per-pair ratios num/den with a t interval on the log ratios."""

    point: float
    ci_low: float  # NaN when n < 2: no interval can be formed
    ci_high: float
    n: int
    log_sd: float  # sample SD of the log ratios (NaN when n < 2): the run's noise, reported

    METHOD = "geometric mean of per-repetition ratios; paired t interval on log ratios (df = n - 1)"


def paired_ratio(
    num: Sequence[float] | np.ndarray, den: Sequence[float] | np.ndarray, *, level: float = 0.95
) -> PairedRatio:
    """Pairs are (num[i], den[i]): the two runs of repetition i."""
    a = np.asarray(num, dtype=np.float64)
    b = np.asarray(den, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("need equally many, non-zero samples")
    if np.any(a <= 0) or np.any(b <= 0) or not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        raise ValueError("timings must be positive and finite")
    logs = np.log(a) - np.log(b)
    mean, lo, hi = mean_t_interval(logs, level)
    sd = float(logs.std(ddof=1)) if logs.size > 1 else math.nan
    return PairedRatio(math.exp(mean), math.exp(lo), math.exp(hi), int(logs.size), sd)


# -- counts ------------------------------------------------------------------------------------
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes of n; (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is exactly 0 (1); rounding gave 5.6e-17, excluding p itself
    lo = 0.0 if k <= 0 else max(0.0, center - half)
    hi = 1.0 if k >= n else min(1.0, center + half)
    return (lo, hi)


def newcombe_paired(n11: int, n10: int, n01: int, n00: int, z: float = Z95) -> tuple[float, float]:
    """95% interval for p2 - p1 in a paired 2x2 table.

    Rows are the first measurement (1 = event), columns the second: n10 = event before and
    not after, n01 = event after only. p1 = (n11 + n10) / n, p2 = (n11 + n01) / n.
    """
    n = n11 + n10 + n01 + n00
    if n == 0:
        return (-1.0, 1.0)
    p1 = (n11 + n10) / n
    p2 = (n11 + n01) / n
    l1, u1 = wilson(n11 + n10, n, z)
    l2, u2 = wilson(n11 + n01, n, z)
    r1, r0 = n11 + n10, n01 + n00  # row margins
    c1, c0 = n11 + n01, n10 + n00  # column margins
    denom = r1 * r0 * c1 * c0
    phi = (n11 * n00 - n10 * n01) / math.sqrt(denom) if denom > 0 else 0.0
    d = p2 - p1
    # lower limit of p2 - p1 uses p2's lower and p1's upper Wilson distances (and vice versa)
    lo = math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    hi = math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return (max(-1.0, d - lo), min(1.0, d + hi))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P[X <= k], X ~ Binomial(n, p)."""
    return float(min(1.0, stats.binom.cdf(k, n, p)))


def binom_sf(k: int, n: int, p: float) -> float:
    """P[X >= k], X ~ Binomial(n, p): the one-sided exact p-value for "rate above p"."""
    if k <= 0:
        return 1.0
    return float(min(1.0, stats.binom.sf(k - 1, n, p)))


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for discordant counts b and c (1.0 when b + c == 0)."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf(min(b, c), n, 0.5))


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h for a change from p1 to p2 (positive when p2 > p1)."""
    return 2.0 * math.asin(math.sqrt(min(1.0, max(0.0, p2)))) - 2.0 * math.asin(
        math.sqrt(min(1.0, max(0.0, p1)))
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adj = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adj[i] = running
    return adj

"""Small exact statistics for the BBQ check (pure math/numpy; no scipy).

- ``wilson``: Wilson score interval for a binomial proportion.
- ``newcombe_paired``: interval for the difference of two paired proportions (Newcombe 1998,
  method 10: hybrid score interval built from the two Wilson intervals and the phi correlation).
- ``mcnemar_exact``: exact two-sided McNemar test on the discordant pairs (b, c):
  p = min(1, 2 * P[X <= min(b, c)]) with X ~ Binomial(b + c, 1/2).
- ``binom_sf``: P[X >= k] for X ~ Binomial(n, p), summed in log space (large n is fine).
- ``cohens_h``: 2 asin sqrt(p2) - 2 asin sqrt(p1).
- ``holm``: Holm step-down adjusted p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def _log_binom_pmf(i: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if i == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if i == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
    )


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P[X <= k], X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, math.exp(_logsumexp([_log_binom_pmf(i, n, p) for i in range(k + 1)])))


def binom_sf(k: int, n: int, p: float) -> float:
    """P[X >= k], X ~ Binomial(n, p): the one-sided exact p-value for "rate above p"."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return min(1.0, math.exp(_logsumexp([_log_binom_pmf(i, n, p) for i in range(k, n + 1)])))


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

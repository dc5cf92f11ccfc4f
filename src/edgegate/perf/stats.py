"""Small statistics kept dependency-free (no scipy): exact Student-t quantiles, paired t
intervals and percentile-bootstrap intervals for ratios of medians."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def t_two_sided(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df``: the exact finite trigonometric series
    (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term, total = 1.0, 1.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 1.0
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t (integer df) by bisection on the exact CDF; p in (0, 1)."""
    if df < 1 or not 0 < p < 1:
        raise ValueError("need df >= 1 and 0 < p < 1")
    target = abs(2 * p - 1)  # P(|T| < q)
    lo, hi = 0.0, 1.0
    while t_two_sided(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    q = (lo + hi) / 2
    return q if p >= 0.5 else -q


def mean_t_interval(x: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a t interval for the mean; NaN bounds with fewer than 2 values."""
    a = np.asarray(x, dtype=np.float64)
    m = float(a.mean()) if a.size else math.nan
    if a.size < 2:
        return m, math.nan, math.nan
    se = float(a.std(ddof=1)) / math.sqrt(a.size)
    q = t_quantile(0.5 + level / 2, a.size - 1)
    return m, m - q * se, m + q * se


def bootstrap_ci(
    n: int,
    statistic: Callable[[np.ndarray], float],
    *,
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap over ``n`` paired units: ``statistic`` gets the resampled indices."""
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    stats = np.fromiter((statistic(row) for row in idx), dtype=np.float64, count=resamples)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def ratio_of_medians(num: Sequence[float] | np.ndarray, den: Sequence[float] | np.ndarray, *, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """median(num)/median(den) with a paired percentile-bootstrap CI (pairs = repetitions run
    back to back, so slow drift of the machine hits both members of a pair)."""
    a = np.asarray(num, dtype=np.float64)
    b = np.asarray(den, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("need equally many, non-zero samples")
    point = float(np.median(a) / np.median(b))
    if a.size < 2:
        return point, math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, a.size, size=(10_000, a.size))
    stats = np.median(a[idx], axis=1) / np.median(b[idx], axis=1)  # vectorised resamples
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return point, float(lo), float(hi)

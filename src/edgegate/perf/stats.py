"""Small statistics kept dependency-free (no scipy): Student-t quantiles, paired t
intervals and percentile-bootstrap intervals for ratios of medians."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t. Exact for df 1 and 2; the Cornish-Fisher expansion (Abramowitz
    & Stegun 26.7.5) above that, accurate to ~1e-4 for df >= 3 at the 95% level."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NormalDist().inv_cdf(p)
    v = float(df)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


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


def ratio_of_medians(num: Sequence[float], den: Sequence[float], *, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """median(num)/median(den) with a paired percentile-bootstrap CI (pairs = repetitions run
    back to back, so slow drift of the machine hits both members of a pair)."""
    a = np.asarray(num, dtype=np.float64)
    b = np.asarray(den, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("need equally many, non-zero samples")
    point = float(np.median(a) / np.median(b))
    lo, hi = bootstrap_ci(a.size, lambda i: float(np.median(a[i]) / np.median(b[i])), level=level, seed=seed)
    return point, lo, hi

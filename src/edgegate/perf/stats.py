"""Interval estimates for timings and paired differences, on scipy's Student t.

Why a t interval on log ratios for speedups: each repetition runs the dense and the compressed
model back to back (ABBA), so its ratio cancels slow drift of the machine; the log makes the
ratio symmetric (0.5x and 2x are equally far from 1x) and its mean a geometric mean. A t
interval widens honestly at small n (df = n - 1), where a percentile bootstrap of 3 samples
can only return ratios of the values it happened to draw.
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


def mean_t_interval(x: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a t interval for the mean; NaN bounds with fewer than 2 values."""
    a = np.asarray(x, dtype=np.float64)
    m = float(a.mean()) if a.size else math.nan
    if a.size < 2:
        return m, math.nan, math.nan
    se = float(a.std(ddof=1)) / math.sqrt(a.size)
    q = t_quantile(0.5 + level / 2, a.size - 1)
    return m, m - q * se, m + q * se


@dataclass(frozen=True)
class PairedRatio:
    """Geometric mean of per-pair ratios num/den with a t interval on the log ratios."""

    point: float
    ci_low: float  # NaN when n < 2: no interval can be formed
    ci_high: float
    n: int
    log_sd: float  # sample SD of the log ratios (NaN when n < 2): the run's noise, reported

    METHOD = "geometric mean of per-repetition ratios; paired t interval on log ratios (df = n - 1)"


def paired_ratio(num: Sequence[float] | np.ndarray, den: Sequence[float] | np.ndarray, *, level: float = 0.95) -> PairedRatio:
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

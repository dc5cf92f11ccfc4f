"""Paired statistics for the BBQ judge, on scipy.stats and numpy (maintained implementations).

Each BBQ item is answered by both models, so every comparison is paired by item:
- ``exact_binomial``: scipy.stats.binomtest with its Clopper-Pearson interval; with p0 = 1/2 on
  the discordant counts (b, c) it is the exact McNemar test.
- ``bootstrap``: paired percentile bootstrap: items are resampled *as pairs* (one index draws
  the item for both models), ``resamples`` times with a fixed seed, so a report is reproducible.
- ``permutation``: scipy.stats.permutation_test with ``permutation_type="samples"``: under H0 the
  two models' answers to an item are exchangeable, so the null distribution of a statistic is
  built by swapping dense/compressed within random items.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from edgegate.stats import cohens_h as _h

Stat = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (dense, compressed) codes [..., n] -> [...]


@dataclass(frozen=True)
class Binomial:
    k: int
    n: int
    p0: float
    p_value: float
    ci: tuple[float, float]  # Clopper-Pearson 95% for k/n
    test: str

    @property
    def rate(self) -> float | None:
        return self.k / self.n if self.n else None


def exact_binomial(k: int, n: int, p0: float = 0.5, alternative: str = "two-sided") -> Binomial:
    """Exact binomial test of k successes in n trials against p0 (scipy.stats.binomtest)."""
    if n <= 0:
        return Binomial(k, n, p0, 1.0, (0.0, 1.0), f"exact binomial ({alternative}), no trials")
    r = sps.binomtest(int(k), int(n), p0, alternative=alternative)
    # the interval is always the two-sided Clopper-Pearson one: a one-sided test's own interval
    # ends at 0 or 1 and read as "95% CI 0.42..1.000" in reports
    ci = sps.binomtest(int(k), int(n), p0).proportion_ci(confidence_level=0.95, method="exact")
    return Binomial(
        k,
        n,
        p0,
        float(r.pvalue),
        (float(ci.low), float(ci.high)),
        f"exact binomial ({alternative}, p0={p0:.3g})",
    )


def mcnemar(b: int, c: int) -> Binomial:
    """Exact McNemar on the discordant pairs: b of b + c moved one way, H0 p = 1/2."""
    r = exact_binomial(b, b + c, 0.5)
    return Binomial(
        r.k, r.n, r.p0, r.p_value, r.ci, "exact McNemar (binomial on discordant pairs, two-sided)"
    )


def bootstrap_many(
    dense: np.ndarray, comp: np.ndarray, stats: dict[str, Stat], *, resamples: int, seed: int
) -> dict[str, tuple[float, float] | None]:
    """95% percentile interval of every statistic over the same item-paired bootstrap
    resamples; None for a statistic undefined in more than 5% of them (e.g. no committed
    answers)."""
    n = len(dense)
    if n == 0 or resamples <= 0:
        return dict.fromkeys(stats)
    rng = np.random.default_rng(seed)
    vals: dict[str, list[np.ndarray]] = {k: [] for k in stats}
    step = max(1, 2_000_000 // n)  # bounded memory: at most ~2M indices per chunk
    for i in range(0, resamples, step):
        idx = rng.integers(0, n, size=(min(step, resamples - i), n))
        d, c = dense[idx], comp[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            for k, f in stats.items():
                vals[k].append(np.asarray(f(d, c), dtype=np.float64))
    out: dict[str, tuple[float, float] | None] = {}
    for k, parts in vals.items():
        v = np.concatenate(parts)
        ok = v[np.isfinite(v)]
        if len(ok) < 0.95 * len(v):
            out[k] = None
            continue
        lo, hi = np.percentile(ok, [2.5, 97.5])
        out[k] = (float(lo), float(hi))
    return out


def permutation(
    dense: np.ndarray, comp: np.ndarray, stat: Stat, *, resamples: int, seed: int
) -> float:
    """Two-sided p-value of ``stat`` (compressed minus dense) under within-item exchange."""
    if len(dense) == 0:
        return 1.0

    def s(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.asarray(stat(x, y), dtype=np.float64)
        return np.nan_to_num(out, nan=0.0)  # an undefined resample counts as "no difference"

    observed = s(dense, comp)
    if not math.isfinite(float(observed)):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sps.permutation_test(
            (dense, comp),
            s,
            permutation_type="samples",
            vectorized=True,
            n_resamples=resamples,
            alternative="two-sided",
            random_state=seed,
        )
    return float(min(1.0, r.pvalue))


def cohens_h(p1: float | None, p2: float | None) -> float | None:
    """Cohen's h from p1 to p2, or None when either is undefined."""
    if p1 is None or p2 is None or not (math.isfinite(p1) and math.isfinite(p2)):
        return None
    return _h(p1, p2)

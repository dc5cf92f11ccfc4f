"""The counting behind ``fingerprint.mask_agreement``, without a stable argsort per row or
per 4-group (which took most of a checkpoint comparison's time): each count is the one that
``np.argsort(..., kind="stable")`` of the dense magnitudes would give, ties and NaN included
(tests/test_forensics_fingerprint.py pins them to that reference).
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def changes(d: np.ndarray, c: np.ndarray, mask: np.ndarray) -> tuple[int, float]:
    """How many kept (non-zero) compressed entries differ from the dense value, and the
    largest finite difference (0.0 if none)."""
    diff = c - d
    np.abs(diff, out=diff)
    # zero the pruned entries by a multiply (a masked write or compaction is ~10x slower);
    # exact unless a pruned |d| is Inf or NaN (x * 0 is NaN), which the max then shows
    with np.errstate(invalid="ignore"):
        diff *= ~mask
    top = float(diff.max()) if diff.size else 0.0
    if math.isfinite(top):  # max propagates NaN and Inf: every entry is finite
        return int(np.count_nonzero(diff != 0)), top  # (counting a bool array is ~3x faster)
    kept = np.abs(c - d)[~mask]  # rare: NaN or Inf somewhere; NaN counts as a change
    finite = kept[np.isfinite(kept)]
    return int(np.count_nonzero(kept)), float(finite.max()) if finite.size else 0.0


def rank_keys(absd: np.ndarray) -> np.ndarray:
    """Keys that order like numpy's sort of ``absd``: ``absd`` itself, or with NaN (which
    numpy sorts last, all equal) its bit patterns with every NaN made one value above Inf,
    as ``<`` and ``==`` on NaN would not order them."""
    if not np.isnan(absd.max()):  # the max is NaN iff some entry is
        return absd
    bits = absd.view(np.uint32)  # non-negative floats order as their bit patterns
    return np.where(np.isnan(absd), np.uint32(0x7FC00000), bits)


def row_overlap(keys: np.ndarray, mask: np.ndarray, kr: np.ndarray) -> int:
    """Zeros among each row's kr smallest in the order of ``argsort(kind="stable")``, which
    takes every entry below the row's kr-th smallest value t, then entries equal to t in
    column order. Finding t needs only a value sort (~20x faster than the stable argsort)."""
    t = np.take_along_axis(np.sort(keys, axis=1), np.maximum(kr - 1, 0)[:, None], axis=1)
    below = keys < t
    overlap = int(np.count_nonzero(below & mask))
    need = kr - below.sum(axis=1, dtype=np.int32)  # how many entries equal to t are taken
    # each tie's rank among its row's ties (flat indices come row by row, columns ascending)
    tied = np.flatnonzero(keys == t)
    r = tied // keys.shape[1]
    tie_rank = np.arange(r.size) - np.searchsorted(r, r)
    overlap += int(np.count_nonzero(mask.ravel()[tied] & (tie_rank < need[r])))
    return overlap


def group_overlap(keys: np.ndarray, mask: np.ndarray) -> tuple[int, float, bool]:
    """Overlap of the mask with each 4-group's k_g smallest |w| (what 2:4 magnitude keeps),
    its chance level, and whether every group has the same zero count (an N:M mask)."""
    g = keys.reshape(-1, 4)
    m = mask.reshape(-1, 4)
    mu = m.view(np.uint8)  # four column adds: a sum over an axis of width 4 is ~10x slower
    kg = mu[:, 0] + mu[:, 1] + mu[:, 2] + mu[:, 3]
    # ranked as by a stable argsort of each group (one call per group: slow), from the 6
    # pairwise comparisons: for i < j, the sort puts i first iff g_i <= g_j
    first = {(i, j): g[:, i] <= g[:, j] for i, j in itertools.combinations(range(4), 2)}
    overlap = 0
    for j in range(4):
        place = np.zeros(kg.shape, dtype=np.uint8)  # entries the sort puts before j
        for i in range(4):
            if i < j:
                place += first[i, j]
            elif i > j:
                place += ~first[j, i]
        overlap += int(np.count_nonzero(m[:, j] & (place < kg)))
    nm = bool(kg.size and (kg == kg[0]).all())
    return overlap, float((kg.astype(np.float64) ** 2).sum() / 4), nm

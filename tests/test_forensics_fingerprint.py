"""Mask fingerprinting on constructed masks: magnitude per tensor / per row, random,
activation-aware (Wanda-like), plus super-weight survival and weights changed beyond pruning."""

from __future__ import annotations

import numpy as np
import pytest
from test_forensics_sparsity import ArrayCheckpoint, model

from edgegate.forensics.fingerprint import (
    classify,
    compare_checkpoints,
    mask_agreement,
    super_weights,
)
from edgegate.forensics.scan import scan_checkpoint


def dense_matrix(seed: int = 0, rows: int = 192, cols: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # rows of different scale, as in trained layers; keeps per-row and per-tensor ranks apart
    return (rng.standard_normal((rows, cols)) * rng.lognormal(0, 0.7, (rows, 1))).astype(np.float32)


def zero_where(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = w.copy()
    out[mask] = 0.0
    return out


def tensor_magnitude_mask(w: np.ndarray, frac: float) -> np.ndarray:
    k = int(w.size * frac)
    m = np.zeros(w.size, bool)
    m[np.argsort(np.abs(w).ravel())[:k]] = True
    return m.reshape(w.shape)


def row_mask_by_score(score: np.ndarray, frac: float) -> np.ndarray:
    k = int(score.shape[1] * frac)
    m = np.zeros(score.shape, bool)
    np.put_along_axis(m, np.argsort(score, axis=1)[:, :k], True, axis=1)
    return m


def test_agreement_counts_by_hand() -> None:
    d = np.array([[1.0, -2.0, 3.0, 4.0], [8.0, 7.0, -0.5, 6.0]], dtype=np.float32)
    c = np.array([[0.0, -2.0, 3.0, 4.0], [8.0, 0.0, 0.0, 6.0]], dtype=np.float32)
    a = mask_agreement(d, c)
    # k = 3 zeros; 3 smallest |d| = 0.5, 1, 2 -> zeros sit on 0.5 and 1: overlap 2
    assert (a.pruned, a.tensor_overlap) == (3, 2)
    # per row: row 0 k=1 smallest is 1.0 (hit); row 1 k=2 smallest are 0.5, 6 -> one hit
    assert a.row_overlap == 2
    assert a.random_tensor_agreement == pytest.approx(3 / 8)
    assert a.row_random == pytest.approx((1 + 4) / 4)
    assert a.changed == 0 and a.kept == 5


def test_magnitude_per_tensor() -> None:
    d = dense_matrix()
    fp = classify(mask_agreement(d, zero_where(d, tensor_magnitude_mask(d, 0.5))))
    assert fp.method == "magnitude (per-tensor)"
    assert fp.totals.tensor_agreement == 1.0 and fp.totals.row_agreement == 1.0
    assert "per-tensor 100.0% (random 50.0%)" in fp.evidence


def test_magnitude_per_row() -> None:
    d = dense_matrix(1)
    agr = mask_agreement(d, zero_where(d, row_mask_by_score(np.abs(d), 0.5)), row_uniform=True)
    fp = classify(agr)
    assert fp.method == "magnitude (per-row)"
    assert agr.row_agreement == 1.0 and agr.tensor_agreement < 0.9


def test_random() -> None:
    d = dense_matrix(2)
    rng = np.random.default_rng(3)
    fp = classify(mask_agreement(d, zero_where(d, rng.random(d.shape) < 0.5)))
    assert fp.method == "random"
    assert abs(fp.totals.tensor_agreement - fp.totals.random_tensor_agreement) < 0.03


def test_activation_aware_like() -> None:
    total = None
    for seed in range(3):
        d = dense_matrix(10 + seed)
        act = np.random.default_rng(seed).lognormal(0, 1.0, d.shape[1])  # input-channel norms
        agr = mask_agreement(
            d, zero_where(d, row_mask_by_score(np.abs(d) * act, 0.5)), row_uniform=True
        )
        total = agr if total is None else total + agr
    assert total is not None
    fp = classify(total)
    assert fp.method == "activation-aware-like (row-uniform, not magnitude-ranked)"
    assert total.random_row_agreement + 0.05 < total.row_agreement < 0.9
    assert total.tensors == 3 and total.row_uniform_tensors == 3


def test_super_weight_zeroed_and_changed_weights() -> None:
    d = np.random.default_rng(4).standard_normal((64, 192)).astype(np.float32)  # max ~4 std
    d[5, 17] = 60.0
    c = zero_where(d, tensor_magnitude_mask(d, 0.5))
    c[5, 17] = 0.0
    sw = super_weights("down", d, c)
    assert [(s.row, s.col, s.zeroed) for s in sw] == [(5, 17, True)]
    c[0, c[0] != 0] += 0.25  # an update of every kept weight in row 0
    a = mask_agreement(d, c)
    assert a.changed == int(np.count_nonzero(c[0])) and a.max_abs_change == pytest.approx(0.25)


def test_compare_checkpoints_end_to_end() -> None:
    dense = model(
        skip=tuple(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    )
    comp = {k: v.copy() for k, v in dense.items()}
    for name, w in comp.items():
        if "proj" in name:
            comp[name] = zero_where(w, tensor_magnitude_mask(w, 0.5))
    dck, cck = ArrayCheckpoint(dense), ArrayCheckpoint(comp)
    res = scan_checkpoint(cck)
    cmp_ = compare_checkpoints(dck, cck, scan_checkpoint(dck).size, {})
    assert cmp_.paired == 14 and cmp_.fingerprint.method == "magnitude (per-tensor)"
    assert cmp_.fingerprint.totals.changed == 0
    assert cmp_.super_weights.tensors_examined == 2
    assert cmp_.to_dict(res.size.disk_bytes)["fingerprint"]["pruned"] == res.prunable.zeros


def test_nm_magnitude_only_for_nm_masks() -> None:
    d = dense_matrix(5)
    g = np.abs(d).reshape(-1, 4)
    m = np.zeros(g.shape, bool)
    np.put_along_axis(m, np.argsort(g, axis=1)[:, :2], True, axis=1)
    agr = mask_agreement(d, zero_where(d, m.reshape(d.shape)), row_uniform=True)
    assert agr.group_agreement == 1.0 and agr.random_group_agreement == 0.5 and agr.nm_tensors == 1
    assert classify(agr).method == "magnitude (per 4-group, N:M)"
    # a Wanda-like unstructured mask also ranks well inside 4-groups, but is not N:M
    act = np.random.default_rng(6).lognormal(0, 1.0, d.shape[1])
    agr2 = mask_agreement(
        d, zero_where(d, row_mask_by_score(np.abs(d) * act, 0.5)), row_uniform=True
    )
    assert agr2.nm_tensors == 0
    assert classify(agr2).method.startswith("activation-aware-like")


def reference_agreement(d: np.ndarray, c: np.ndarray) -> tuple[int, int, int, int, int, float]:
    """mask_agreement's counts the plain way: stable argsorts per row and per 4-group, the
    changed entries by compaction (the tensor overlap keeps argpartition, its definition)."""
    mask = c == 0
    absd = np.abs(d)
    k = int(mask.sum())
    smallest = np.argpartition(absd.ravel(), k - 1)[:k] if 0 < k < d.size else np.arange(k)
    kr = mask.sum(axis=1)
    ranked = np.take_along_axis(mask, np.argsort(absd, axis=1, kind="stable"), axis=1)
    row = int((ranked & (np.arange(d.shape[1]) < kr[:, None])).sum())
    group = 0
    if d.shape[1] % 4 == 0:
        m, g = mask.reshape(-1, 4), absd.reshape(-1, 4)
        ranked = np.take_along_axis(m, np.argsort(g, axis=1, kind="stable"), axis=1)
        group = int((ranked & (np.arange(4) < m.sum(axis=1)[:, None])).sum())
    diff = np.abs(c - d)[~mask]
    finite = diff[np.isfinite(diff)]
    max_change = float(finite.max()) if finite.size else 0.0
    return k, int(mask.ravel()[smallest].sum()), row, group, int(np.count_nonzero(diff)), max_change


@pytest.mark.parametrize("seed", range(4))
def test_agreement_matches_plain_ranking_with_ties_zeros_and_nan(seed: int) -> None:
    """The fast ranking (value sort per row, pairwise ranks per 4-group, a multiply for the
    changed entries) must give the stable argsort's counts exactly: few distinct magnitudes
    make ties at every threshold, plus exact zeros (also -0.0), NaN and Inf."""
    rng = np.random.default_rng(seed)
    for case in range(150):
        rows, cols = int(rng.integers(1, 9)), int(rng.choice([1, 3, 4, 8, 12, 16]))
        levels = int(rng.choice([1, 2, 3, 8, 1000]))
        d = rng.integers(-levels, levels + 1, (rows, cols)).astype(np.float32) * 0.5
        d[rng.random(d.shape) < 0.1] = -0.0
        if case % 3 == 0:  # random mask
            m = rng.random(d.shape) < rng.random()
        elif case % 3 == 1:  # magnitude with ties at the threshold, a few flipped
            m = np.abs(d) <= np.quantile(np.abs(d), rng.random())
            m ^= rng.random(d.shape) < 0.1
        else:  # per row: any count of zeros from none to all, on stably-ranked entries
            m = np.zeros(d.shape, bool)
            for r in range(rows):
                m[r, np.argsort(np.abs(d[r]), kind="stable")[: rng.integers(0, cols + 1)]] = True
        c = np.where(m, np.float32(-0.0) if case % 2 else np.float32(0.0), d)
        c[rng.random(d.shape) < 0.1] += 0.25  # changed beyond pruning
        if case % 10 == 0:
            d.flat[rng.integers(d.size)] = rng.choice([np.nan, np.inf, -np.inf])
        if case % 10 == 5:
            c.flat[rng.integers(c.size)] = rng.choice([np.nan, np.inf])
        with np.errstate(invalid="ignore"):
            a = mask_agreement(d, c)
            want = reference_agreement(d, c)
        got = (a.pruned, a.tensor_overlap, a.row_overlap, a.group_overlap, a.changed)
        assert (*got, a.max_abs_change) == want, (case, d, c)
        kr = (c == 0).sum(axis=1).astype(np.float64)
        assert a.row_random == (float((kr**2).sum() / cols) if kr.any() else 0.0)

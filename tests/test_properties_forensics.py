"""Property tests (hypothesis) for the counting kernel and the size projections.

Expected values come from plain numpy on the float values (``x == 0``), an implementation
independent of the kernel's bit tricks.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgegate.forensics.size import TensorSize, bitmask_bytes, csr_bytes
from edgegate.forensics.zeros import tensor_stats

FAST = settings(max_examples=60, deadline=None)

_shapes = st.tuples(st.integers(1, 12), st.sampled_from([1, 3, 4, 8, 12, 16, 24]))
_floats = st.sampled_from([np.float16, np.float32, np.float64])
# values biased towards zeros of both signs, plus the non-finite ones
_vals = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -2.5, float("nan"), float("inf"), -float("inf")]),
    st.floats(-1e3, 1e3, width=16),
)


def _bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (truncation; the zero/NaN/Inf classes survive it)."""
    return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


@FAST
@given(dtype=_floats, data=st.data())
def test_counts_match_numpy_and_sparsity_in_unit_interval(dtype: type, data: st.DataObject) -> None:
    arr = data.draw(hnp.arrays(dtype, _shapes, elements=_vals))
    s = tensor_stats(arr, block_elems=data.draw(st.sampled_from([8, 64, 1 << 17])))
    assert s.numel == arr.size
    assert s.zeros == int(np.count_nonzero(arr == 0))
    assert s.nan == int(np.isnan(arr).sum())
    assert s.inf == int(np.isinf(arr).sum())
    assert 0.0 <= s.zeros / s.numel <= 1.0
    assert s.row_zeros is not None
    assert (s.row_zeros == (arr == 0).sum(axis=1)).all()
    assert s.col_all_zero is not None
    assert (s.col_all_zero == (arr == 0).all(axis=0)).all()


@FAST
@given(arr=hnp.arrays(np.float32, _shapes, elements=_vals))
def test_negative_zero_counts_like_positive_zero(arr: np.ndarray) -> None:
    flipped = np.where(arr == 0, -arr, arr)  # every +0.0 becomes -0.0 and back
    a, b = tensor_stats(arr), tensor_stats(flipped)
    assert (a.zeros, a.nan, a.inf, a.nm_ok) == (b.zeros, b.nan, b.inf, b.nm_ok)
    assert (a.row_zeros == b.row_zeros).all()
    # and through the bf16 bit-pattern path
    assert (
        tensor_stats(_bf16(arr), "BF16").zeros
        == tensor_stats(_bf16(flipped), "BF16").zeros
        == a.zeros
    )


@FAST
@given(
    rows=st.integers(1, 16),
    groups=st.integers(1, 8),
    nm=st.sampled_from([(2, 4), (4, 8)]),
    seed=st.integers(0, 2**32 - 1),
    extra=st.booleans(),
)
def test_constructed_nm_masks_conform_fully(
    rows: int, groups: int, nm: tuple[int, int], seed: int, extra: bool
) -> None:
    n, m = nm
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 2.0, (rows, groups * m)).astype(np.float32)
    for r in range(rows):
        for g in range(groups):
            k = n + (int(rng.integers(0, m - n + 1)) if extra else 0)  # >= N zeros per group
            w[r, g * m + rng.choice(m, size=k, replace=False)] = 0.0
    s = tensor_stats(w)
    key = f"{n}:{m}"
    assert s.nm_groups[key] == rows * groups
    assert s.nm_ok[key] == rows * groups  # 100% conformance
    # breaking one group (a zero back to non-zero) must drop conformance by exactly one group
    if not extra:
        r, g = int(rng.integers(0, rows)), int(rng.integers(0, groups))
        z = np.flatnonzero(w[r, g * m : (g + 1) * m] == 0)[0]
        w[r, g * m + z] = 1.0
        assert tensor_stats(w).nm_ok[key] == rows * groups - 1


@FAST
@given(
    rows=st.integers(1, 4096),
    cols=st.integers(1, 4096),
    b=st.sampled_from([1.0, 2.0, 4.0, 0.5625]),
    frac=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_projected_sizes_monotone_in_nnz(
    rows: int, cols: int, b: float, frac: tuple[float, float]
) -> None:
    numel = rows * cols
    lo, hi = sorted(int(f * numel) for f in frac)
    assert bitmask_bytes(rows, cols, lo, b) <= bitmask_bytes(rows, cols, hi, b)
    assert csr_bytes(rows, cols, lo, b) <= csr_bytes(rows, cols, hi, b)
    p_lo = TensorSize(rows, cols, numel, lo, int(numel * b), b, True, False).projected()
    p_hi = TensorSize(rows, cols, numel, hi, int(numel * b), b, True, False).projected()
    for layout in p_lo:
        assert p_lo[layout] <= p_hi[layout], layout
    # a layout never projects fewer bytes than its values alone
    assert p_hi["csr"] >= hi * b and p_hi["sparse-bitmask"] >= hi * b
    # non-prunable tensors stay dense whatever nnz says
    frozen = TensorSize(rows, cols, numel, lo, int(numel * b), b, False, False).projected()
    assert set(frozen.values()) == {p_lo["dense"]}

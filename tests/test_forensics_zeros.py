"""The counting kernel on hand-built arrays and against brute force on random ones."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from edgegate.forensics.zeros import element_kind, tensor_stats


def _bf16_bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def test_hand_built_24_matrix_with_zero_row_and_negative_zero() -> None:
    # 4 x 8; every 4-group has exactly 2 zeros, row 2 is all zero, some zeros are -0.0
    m = np.array(
        [
            [1.0, 0.0, -0.0, 2.0, 0.0, 3.0, 4.0, 0.0],
            [0.0, 0.0, 5.0, 6.0, 7.0, -0.0, 8.0, -0.0],
            [0.0, -0.0, 0.0, 0.0, 0.0, 0.0, -0.0, 0.0],
            [9.0, 1.5, 0.0, -0.0, 0.0, 2.5, -0.0, 3.5],
        ],
        dtype=np.float32,
    )
    st = tensor_stats(_bf16_bits(m), "BF16")
    assert st.numel == 32
    assert st.zeros == 20  # rows 0, 1, 3: 4 zeros each; row 2: all 8
    assert st.row_zeros is not None and st.row_zeros.tolist() == [4, 4, 8, 4]
    assert st.nm_groups["2:4"] == 8 and st.nm_ok["2:4"] == 8  # 100% 2:4
    assert st.nm_groups["4:8"] == 4 and st.nm_ok["4:8"] == 4
    assert st.col_all_zero is not None and st.col_all_zero.tolist() == [False] * 8
    assert st.nan == 0 and st.inf == 0


def test_negative_zero_counts_as_zero_in_every_float_type() -> None:
    v = np.array([0.0, -0.0, 1.0, -2.0, -0.0, 3.0, 0.0, 0.0], dtype=np.float64)
    for arr, name in (
        (v, ""),
        (v.astype(np.float32), ""),
        (v.astype(np.float16), ""),
        (_bf16_bits(v), "BF16"),
    ):
        assert tensor_stats(arr, name, structure=False).zeros == 5, arr.dtype


def test_nan_and_inf_are_counted_not_fatal() -> None:
    v = np.array([[np.nan, np.inf, -np.inf, 0.0, 1.0, -np.nan, 0.0, 2.0]], dtype=np.float32)
    for arr, name in (
        (v, ""),
        (v.astype(np.float16), ""),
        (_bf16_bits(v), "BF16"),
        (v.astype(np.float64), ""),
    ):
        st = tensor_stats(arr, name)
        assert (st.nan, st.inf, st.zeros) == (2, 2, 2), arr.dtype


def test_all_zero_column_and_integer_codes() -> None:
    q = np.arange(1, 17, dtype=np.int8).reshape(2, 8)
    q[:, 3] = 0
    q[0, 5] = 0
    st = tensor_stats(q, "I8")
    assert element_kind(q, "I8") == "int"
    assert st.zeros == 3
    assert st.col_all_zero is not None and np.flatnonzero(st.col_all_zero).tolist() == [3]


@pytest.mark.parametrize("cols", [64, 60, 12, 7])
@pytest.mark.parametrize("block", [16, 100, 1 << 17])
def test_matches_brute_force(cols: int, block: int) -> None:
    rng = np.random.default_rng(cols * 1000 + block)
    w = rng.standard_normal((37, cols)).astype(np.float32)
    w[rng.random(w.shape) < 0.55] = 0.0
    w[rng.random(w.shape) < 0.05] = -0.0
    w[5] = 0.0
    w[:, 2] = -0.0
    z = w == 0
    st = tensor_stats(_bf16_bits(w), "BF16", block_elems=block)
    assert st.zeros == int(z.sum())
    assert st.row_zeros is not None and st.row_zeros.tolist() == z.sum(axis=1).tolist()
    assert st.col_all_zero is not None and st.col_all_zero.tolist() == z.all(axis=0).tolist()
    for nm in ("2:4", "4:8"):
        n, m = int(nm[0]), int(nm[2])
        if cols % m:
            assert nm not in st.nm_ok
        else:
            groups = z.reshape(37, cols // m, m).sum(axis=2)
            assert st.nm_groups[nm] == groups.size
            assert st.nm_ok[nm] == int((groups >= n).sum())


def test_three_d_tensor_is_rows_by_last_dim() -> None:
    a = np.zeros((2, 3, 8), dtype=np.float32)
    a[1, 2] = 1.0
    st = tensor_stats(a)
    assert (st.rows, st.cols, st.zeros) == (6, 8, 40)
    assert st.row_zeros is not None and st.row_zeros.tolist() == [8, 8, 8, 8, 8, 0]


def test_one_d_and_empty() -> None:
    st = tensor_stats(np.array([0.0, 1.0, -0.0], dtype=np.float32))
    assert st.zeros == 2 and st.row_zeros is None
    assert tensor_stats(np.zeros((0, 8), dtype=np.float32)).zeros == 0


def test_memmap_pages_released_without_changing_results(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from edgegate.forensics import zeros as Z

    rng = np.random.default_rng(7)
    w = rng.standard_normal((512, 1024)).astype(np.float32)
    w[rng.random(w.shape) < 0.5] = -0.0
    bits = _bf16_bits(w)
    f = tmp_path / "t.bin"
    f.write_bytes(b"\0" * 100 + bits.tobytes())  # an unaligned offset, as in safetensors
    mm = np.memmap(f, dtype=np.uint16, mode="r", offset=100, shape=bits.shape)
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(Z._Releaser, "CHUNK", 64 << 10)
    real = Z._Releaser.after

    def spy(self, scanned):  # type: ignore[no-untyped-def]
        before = getattr(self, "done", None)
        real(self, scanned)
        if before is not None and self.done != before:
            calls.append((before, self.done))

    monkeypatch.setattr(Z._Releaser, "after", spy)
    got = Z.tensor_stats(mm, "BF16", block_elems=1 << 14)
    ref = Z.tensor_stats(bits.copy(), "BF16", block_elems=1 << 14)
    assert got.zeros == ref.zeros == int((w == 0).sum())
    assert got.row_zeros is not None and ref.row_zeros is not None
    assert (got.row_zeros == ref.row_zeros).all() and got.nm_ok == ref.nm_ok
    assert len(calls) >= 10 and all(b > a for a, b in calls)  # pages were handed back as it went


def test_blocks_without_zeros_are_skipped_correctly() -> None:
    # first and last blocks dense, a middle block pruned: counts must match brute force
    rng = np.random.default_rng(11)
    w = rng.standard_normal((40, 16)).astype(np.float32) + 10.0
    w[17:19, ::2] = 0.0
    st = tensor_stats(_bf16_bits(w), "BF16", block_elems=16 * 4)
    z = w == 0
    assert (
        st.zeros == 16
        and st.row_zeros is not None
        and st.row_zeros.tolist() == z.sum(axis=1).tolist()
    )
    assert (
        st.nm_ok == {"2:4": 8, "4:8": 4}
        and st.col_all_zero is not None
        and not st.col_all_zero.any()
    )

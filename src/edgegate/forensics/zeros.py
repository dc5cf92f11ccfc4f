"""The counting kernel: every per-tensor statistic in one blocked pass over native bytes.

Floats are never converted. A float is zero iff all its bits but the sign are zero, so
``(bits & ~sign) == 0`` counts ``-0.0`` as zero, and it is NaN/Inf iff the magnitude bits
are >= the all-ones exponent pattern. Work happens in row blocks of about
``BLOCK_ELEMS`` elements so every temporary stays in L2; numpy releases the GIL inside
ufuncs, so a thread pool scans two tensors at once.

Structure statistics come from the byte-wise zero mask viewed as uint64 (8 flags per
word, popcount = zeros of the 8-group, for 4:8 and row counts) and as uint32 (4 flags per
word, for 2:4): 8x / 4x fewer elements than the mask itself.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field

import numpy as np

BLOCK_ELEMS = 1 << 17  # 128K elements: u16 input + masks + temporaries stay well inside 1 MiB L2

# (unsigned view dtype, magnitude mask, first non-finite magnitude, +Inf magnitude)
_FLOAT_BITS: dict[str, tuple[type[np.unsignedinteger], int, int]] = {
    "bf16": (np.uint16, 0x7FFF, 0x7F80),
    "f16": (np.uint16, 0x7FFF, 0x7C00),
    "f32": (np.uint32, 0x7FFFFFFF, 0x7F800000),
    "f64": (np.uint64, 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000),
}


@dataclass
class TensorStats:
    """Raw counts for one tensor viewed as ``rows x cols`` (cols = last dim = input dim)."""

    numel: int
    rows: int
    cols: int
    zeros: int = 0
    nan: int = 0
    inf: int = 0
    row_zeros: np.ndarray | None = None  # int64 [rows], zeros per output row
    col_all_zero: np.ndarray | None = None  # bool [cols], True where a whole input column is 0
    nm_groups: dict[str, int] = field(default_factory=dict)  # "2:4" -> groups examined
    nm_ok: dict[str, int] = field(default_factory=dict)  # "2:4" -> groups with >= N zeros


def element_kind(arr: np.ndarray, dtype_name: str = "") -> str:
    """Which bit layout ``arr`` holds: bf16/f16/f32/f64 or 'int' (quantised codes)."""
    name = dtype_name.upper()
    if arr.dtype == np.uint16 and name in ("BF16", "BFLOAT16", ""):
        return "bf16"  # read_native hands bf16 over as a uint16 view
    if arr.dtype == np.float16 or (arr.dtype == np.uint16 and name in ("F16", "FLOAT16")):
        return "f16"
    if arr.dtype == np.float32:
        return "f32"
    if arr.dtype == np.float64:
        return "f64"
    if arr.dtype.kind in "iub":
        return "int"
    raise TypeError(f"cannot count zeros of dtype {arr.dtype}")


def tensor_stats(
    arr: np.ndarray, dtype_name: str = "", *, structure: bool = True, block_elems: int = BLOCK_ELEMS
) -> TensorStats:
    """Count zeros/NaN/Inf of ``arr`` and, with ``structure``, per-row zeros, all-zero
    columns and 2:4 / 4:8 group conformance along the last axis."""
    kind = element_kind(arr, dtype_name)
    release = _Releaser(arr)
    if isinstance(arr, np.memmap):
        arr = arr.view(np.ndarray)  # same pages; skips memmap's per-slice bookkeeping
    if kind != "int" and arr.dtype.kind == "f":
        arr = arr.view(_FLOAT_BITS[kind][0])
    numel = int(arr.size)
    cols = int(arr.shape[-1]) if arr.ndim >= 1 else 1
    rows = numel // cols if cols else 0
    st = TensorStats(numel=numel, rows=rows, cols=cols)
    if numel == 0:
        return st
    mat = arr.reshape(rows, cols)
    do_struct = structure and arr.ndim >= 2
    if do_struct:
        st.row_zeros = np.zeros(rows, dtype=np.int64)
        st.col_all_zero = np.ones(cols, dtype=bool)
        for nm in ("2:4", "4:8"):
            m = int(nm[2])
            if cols % m == 0:
                st.nm_groups[nm] = rows * (cols // m)
                st.nm_ok[nm] = 0
    fast = do_struct and cols % 8 == 0
    step = max(1, block_elems // cols)
    bufs = _Buffers(min(rows, step) * cols, arr.dtype)
    row_bytes = cols * arr.itemsize
    if fast:
        _scan_fast(mat, kind, st, step, release)
        st.zeros = int(st.row_zeros.sum()) if st.row_zeros is not None else 0
        return st
    for r0 in range(0, rows, step):
        blk = mat[r0 : r0 + step]
        if not do_struct:
            st.zeros += _count_only(blk, kind, st, bufs)
        else:
            z = _zero_mask(blk, kind, st, bufs)
            _structure_slow(z, r0, st)
        release.after((r0 + blk.shape[0]) * row_bytes)
    if do_struct:
        assert st.row_zeros is not None
        st.zeros = int(st.row_zeros.sum())
    return st


class _Releaser:
    """Drops already-scanned pages of a memory-mapped tensor from this process every
    ``CHUNK`` bytes (the page cache keeps them), so a 1 GB embedding costs a few MB of RSS
    instead of 1 GB. A no-op for arrays that are not ``np.memmap``s."""

    CHUNK = 16 << 20

    def __init__(self, arr: np.ndarray) -> None:
        # only read-only maps: dropping pages of a copy-on-write map would lose its edits
        readonly = isinstance(arr, np.memmap) and getattr(arr, "mode", None) in ("r", "readonly")
        mm = getattr(arr, "_mmap", None) if readonly else None
        self.mm: mmap.mmap | None = None
        if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED") or arr.size == 0:
            return
        probe = np.frombuffer(mm, dtype=np.uint8, count=1)
        self.base = int(probe.ctypes.data)
        del probe  # release the buffer export at once so the map can be closed later
        self.mm = mm
        self.start = int(arr.ctypes.data) - self.base  # the tensor's first byte within the map
        self.done = self.start // mmap.PAGESIZE * mmap.PAGESIZE

    def after(self, scanned: int) -> None:
        """``scanned`` bytes of the tensor (from its start) are finished with."""
        if self.mm is None:
            return
        end = (self.start + scanned) // mmap.PAGESIZE * mmap.PAGESIZE
        if end - self.done >= self.CHUNK:
            try:
                self.mm.madvise(mmap.MADV_DONTNEED, self.done, end - self.done)
            except (OSError, ValueError):
                self.mm = None  # advisory only: keep scanning without it
                return
            self.done = end


class _Buffers:
    """Reusable per-call scratch so the block loop allocates nothing."""

    def __init__(self, n: int, dtype: np.dtype) -> None:
        self.mag = np.empty(n, dtype=dtype)
        self.mask = np.empty(n, dtype=bool)


def _count_only(blk: np.ndarray, kind: str, st: TensorStats, bufs: _Buffers) -> int:
    """Zeros of one block without building a mask: numel - count_nonzero(magnitude bits)."""
    if kind == "int":
        return int(blk.size - np.count_nonzero(blk))
    _, mag_mask, inf_bits = _FLOAT_BITS[kind]
    mag = bufs.mag[: blk.size].reshape(blk.shape)
    np.bitwise_and(blk, mag_mask, out=mag)
    _nonfinite(mag, inf_bits, st)
    return int(blk.size - np.count_nonzero(mag))


def _nonfinite(mag: np.ndarray, inf_bits: int, st: TensorStats) -> None:
    if int(mag.max()) >= inf_bits:  # rare: split non-finite into Inf and NaN only then
        st.inf += int(np.count_nonzero(mag == inf_bits))
        st.nan += int(np.count_nonzero(mag > inf_bits))


def _zero_mask(blk: np.ndarray, kind: str, st: TensorStats, bufs: _Buffers) -> np.ndarray:
    """Boolean zero mask of one block (shape kept); also accumulates NaN/Inf counts."""
    n = blk.size
    z = bufs.mask[:n].reshape(blk.shape)
    if kind == "int":
        np.equal(blk, 0, out=z)
        return z
    _, mag_mask, inf_bits = _FLOAT_BITS[kind]
    mag = bufs.mag[:n].reshape(blk.shape)
    np.bitwise_and(blk, mag_mask, out=mag)
    np.equal(mag, 0, out=z)
    _nonfinite(mag, inf_bits, st)
    return z


def _scan_fast(mat: np.ndarray, kind: str, st: TensorStats, step: int, release: _Releaser) -> None:
    """The hot loop for float tensors with width % 8 == 0: same statistics as
    ``_zero_mask`` + ``_structure_fast`` with every view built once, not per block."""
    rows, cols = mat.shape
    _, mag_mask, inf_bits = _FLOAT_BITS.get(kind, (np.uint8, 0, 0))  # "int": codes, no sign bit
    assert st.row_zeros is not None and st.col_all_zero is not None
    has24, has48 = "2:4" in st.nm_ok, "4:8" in st.nm_ok
    acc = np.uint16 if cols < 65536 else np.int64  # a row has <= cols zeros
    one = np.uint32(1)

    def scratch(r: int) -> tuple[np.ndarray, ...]:
        mag = np.empty((r, cols), dtype=mat.dtype)
        z = np.empty((r, cols), dtype=bool)
        w = z.view(np.uint64)  # 8 zero flags (bit 0 of each byte) per word
        w4 = z.view(np.uint32)  # 4 flags per word
        return mag, z, w, np.empty(w.shape, np.uint8), np.empty(w.shape, bool), w4, np.empty(w4.shape, np.uint32)

    full = scratch(min(step, rows))
    ok24 = ok48 = 0
    cols_open = True
    row_bytes = cols * mat.itemsize
    for r0 in range(0, rows, step):
        blk = mat[r0 : r0 + step]
        r = blk.shape[0]
        mag, z, w, c8, ge, w4, t = full if r == full[0].shape[0] else scratch(r)
        if kind == "int":
            np.equal(blk, 0, out=z)
        else:
            np.bitwise_and(blk, mag_mask, out=mag)
            np.equal(mag, 0, out=z)
            if mag.max() >= inf_bits:
                _nonfinite(mag, inf_bits, st)
        if not np.count_nonzero(z):  # a block without zeros (dense tensors): nothing to add
            if cols_open:
                st.col_all_zero[:] = False
                cols_open = False
            release.after((r0 + r) * row_bytes)
            continue
        np.bitwise_count(w, out=c8)  # zeros per 8-group
        st.row_zeros[r0 : r0 + r] = c8.sum(axis=1, dtype=acc)
        if has48:
            np.greater_equal(c8, 4, out=ge)
            ok48 += int(np.count_nonzero(ge))
        if has24:  # w & (w - 1) clears the lowest set flag: non-zero iff >= 2 zeros of 4
            np.subtract(w4, one, out=t)
            np.bitwise_and(t, w4, out=t)
            ok24 += int(np.count_nonzero(t))
        if cols_open:  # once every column has a non-zero, stop looking
            colw = np.bitwise_and.reduce(w, axis=0)
            st.col_all_zero &= colw.view(np.uint8).astype(bool)
            cols_open = bool(st.col_all_zero.any())
        release.after((r0 + r) * row_bytes)
    if has24:
        st.nm_ok["2:4"] = ok24
    if has48:
        st.nm_ok["4:8"] = ok48


def _structure_slow(z: np.ndarray, r0: int, st: TensorStats) -> None:
    """Same results for widths not divisible by 8 (rare: odd vocab-sized dims)."""
    rows, cols = z.shape
    assert st.row_zeros is not None and st.col_all_zero is not None
    st.row_zeros[r0 : r0 + rows] = np.count_nonzero(z, axis=1)
    st.col_all_zero &= np.logical_and.reduce(z, axis=0)
    for nm in list(st.nm_ok):
        n, m = int(nm[0]), int(nm[2])
        g = z.reshape(rows, cols // m, m).sum(axis=2)
        st.nm_ok[nm] += int(np.count_nonzero(g >= n))

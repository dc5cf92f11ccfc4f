"""The counting kernel: every per-tensor statistic in one blocked pass over native bytes.

Floats are never converted. A float is zero iff all its bits but the sign are zero:
``x + x`` on the unsigned view shifts the sign out, so ``x + x == 0`` counts ``-0.0`` as
zero, and the doubled bits keep the order of magnitudes, so ``x + x >= 2 * Inf-bits`` is
exactly NaN/Inf (split only when a block's max shows one). Work happens in row blocks of
about ``BLOCK_ELEMS`` elements so temporaries stay in L2; numpy releases the GIL inside
ufuncs, so threads scan in parallel (``scan.py`` also splits large tensors by rows).

Structure statistics come from the zero mask bit-packed (``np.packbits``: one byte per
8-group, the high nibble the first 4-group): popcount per byte gives the 8-group's zeros
(4:8, row counts), the high nibble's popcount and the difference the two 4-groups' (2:4),
an AND over rows the all-zero columns, all in a few calls over 1/16 of the tensor's bytes.
"""

from __future__ import annotations

import itertools
import mmap
import threading
from dataclasses import dataclass, field

import numpy as np

BLOCK_ELEMS = (
    1 << 18
)  # 256K elements: the doubled bits (512 KB for bf16) + mask (256 KB) stay in L2

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
    if fast:
        _scan_fast(mat, kind, st, step, release)
        st.zeros = int(st.row_zeros.sum()) if st.row_zeros is not None else 0
        return st
    if not do_struct:  # flat blocks: a 1-D tensor or a short-and-wide one is not one huge block
        flat = arr.reshape(-1)
        bufs = _Buffers(min(numel, block_elems), arr.dtype, kind)
        for i in range(0, numel, block_elems):
            blk = flat[i : i + block_elems]
            st.zeros += _count_only(blk, kind, st, bufs)
            release.after((i + blk.size) * arr.itemsize)
        return st
    bufs = _Buffers(min(rows, step) * cols, arr.dtype, kind)
    row_bytes = cols * arr.itemsize
    for r0 in range(0, rows, step):
        blk = mat[r0 : r0 + step]
        z = _zero_mask(blk, kind, st, bufs)
        _structure_slow(z, r0, st)
        release.after((r0 + blk.shape[0]) * row_bytes)
    assert st.row_zeros is not None
    st.zeros = int(st.row_zeros.sum())
    return st


def row_parts(arr: np.ndarray, part_bytes: int) -> list[tuple[int, int]]:
    """Row ranges of ``arr`` (as ``rows x last dim``) of about ``part_bytes`` each, so one
    large tensor can be scanned by several threads; ``[(0, rows)]`` for small or 1-D ones."""
    if arr.ndim < 2 or arr.size == 0 or arr.nbytes <= part_bytes:
        return [(0, arr.size // arr.shape[-1] if arr.ndim else 1)]
    rows = arr.size // arr.shape[-1]
    k = min(rows, -(-arr.nbytes // part_bytes))
    cuts = [rows * j // k for j in range(k + 1)]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def rows_of(arr: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0:r1`` of ``arr`` viewed as ``rows x last dim`` (a view: a memory map stays one)."""
    return arr.reshape(-1, arr.shape[-1])[r0:r1]


def merge_stats(parts: list[TensorStats]) -> TensorStats:
    """One tensor's statistics from those of consecutive row ranges of it."""
    first = parts[0]
    if len(parts) == 1:
        return first
    st = TensorStats(numel=sum(p.numel for p in parts), rows=sum(p.rows for p in parts), cols=first.cols,
                     zeros=sum(p.zeros for p in parts), nan=sum(p.nan for p in parts),
                     inf=sum(p.inf for p in parts))  # fmt: skip
    if all(p.row_zeros is not None and p.col_all_zero is not None for p in parts):
        st.row_zeros = np.concatenate([p.row_zeros for p in parts if p.row_zeros is not None])
        st.col_all_zero = np.logical_and.reduce(
            [p.col_all_zero for p in parts if p.col_all_zero is not None]
        )
        for nm in first.nm_groups:
            st.nm_groups[nm] = sum(p.nm_groups[nm] for p in parts)
            st.nm_ok[nm] = sum(p.nm_ok[nm] for p in parts)
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
        if (
            mm is None
            or not hasattr(mm, "madvise")
            or not hasattr(mmap, "MADV_DONTNEED")
            or arr.size == 0
        ):
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


_LOCAL = threading.local()


def _scratch(slot: str, n: int, dtype: np.dtype | type) -> np.ndarray:
    """``n`` elements of per-thread scratch that outlives the call: fresh large arrays are
    fresh pages, and faulting them in again for each of hundreds of tensors costs more
    system time than the scan itself."""
    dt = np.dtype(dtype)
    pool: dict[str, np.ndarray] = _LOCAL.__dict__.setdefault("pool", {})
    buf = pool.get(slot)
    if buf is None or buf.nbytes < n * dt.itemsize:
        buf = pool[slot] = np.empty(max(n * dt.itemsize, 1 << 16), dtype=np.uint8)
    return buf[: n * dt.itemsize].view(dt)


def drop_scratch() -> None:
    """Free the calling thread's scratch (a pool thread's goes with the thread)."""
    _LOCAL.__dict__.pop("pool", None)


class _Buffers:
    """Reusable per-thread scratch so the block loop allocates nothing, and the constants."""

    def __init__(self, n: int, dtype: np.dtype, kind: str) -> None:
        self.mag = _scratch("mag", n, dtype)
        self.mask = _scratch("mask", n, bool)
        self.inf2 = _shifted_inf(kind, np.dtype(dtype)) if kind in _FLOAT_BITS else None


def _shifted_inf(kind: str, dtype: np.dtype) -> np.unsignedinteger:
    """The +Inf magnitude shifted left by one, in ``dtype``: ``x + x`` drops the sign bit
    and keeps the order of magnitudes, so ``(x + x) >= this`` is exactly NaN or Inf."""
    _, mag_mask, inf_bits = _FLOAT_BITS[kind]
    return dtype.type((inf_bits << 1) & ((mag_mask << 1) | 1))


def _count_only(blk: np.ndarray, kind: str, st: TensorStats, bufs: _Buffers) -> int:
    """Zeros of one block without building a mask: numel - count_nonzero(x + x), since
    doubling the bits shifts the sign out (-0.0 and +0.0 both become 0)."""
    if kind == "int":
        return int(blk.size - np.count_nonzero(blk))
    mag = bufs.mag[: blk.size].reshape(blk.shape)
    np.add(blk, blk, out=mag)
    assert bufs.inf2 is not None
    _nonfinite2(mag, bufs.inf2, st)
    return int(blk.size - np.count_nonzero(mag))


def _nonfinite2(mag2: np.ndarray, inf2: np.unsignedinteger, st: TensorStats) -> None:
    """NaN/Inf of a block of doubled bits; the split is computed only when the max shows one."""
    if mag2.max() >= inf2:
        st.inf += int(np.count_nonzero(mag2 == inf2))
        st.nan += int(np.count_nonzero(mag2 > inf2))


def _zero_mask(blk: np.ndarray, kind: str, st: TensorStats, bufs: _Buffers) -> np.ndarray:
    """Boolean zero mask of one block (shape kept); also accumulates NaN/Inf counts."""
    n = blk.size
    z = bufs.mask[:n].reshape(blk.shape)
    if kind == "int":
        np.equal(blk, 0, out=z)  # no x + x here: signed codes would wrap (-128 + -128 == 0)
        return z
    mag = bufs.mag[:n].reshape(blk.shape)
    np.add(blk, blk, out=mag)
    np.equal(mag, 0, out=z)
    assert bufs.inf2 is not None
    _nonfinite2(mag, bufs.inf2, st)
    return z


PACKED_CHUNK = 1 << 20  # bytes of packed flags per structure step (= 8M elements)


def _scan_fast(mat: np.ndarray, kind: str, st: TensorStats, step: int, release: _Releaser) -> None:
    """The hot loop for tensors with width % 8 == 0. Per block only four whole-width
    passes run (x + x, max, == 0, packbits); every structure statistic then comes from
    the bit-packed zero flags, 1/8 of the mask's bytes, in a few large numpy calls, so
    per-call overhead and the GIL are paid per megabyte, not per block."""
    rows, cols = mat.shape
    pb = cols // 8  # packed bytes per row; byte j of a row = zero flags of 8-group j
    packed = _scratch("packed", rows * pb, np.uint8)
    bufs = _Buffers(min(step, rows) * cols, mat.dtype, kind)
    row_bytes = cols * mat.itemsize
    inf2 = bufs.inf2
    peak = np.maximum.reduce
    for r0 in range(0, rows, step):  # per block: as few Python-level calls as possible
        blk = mat[r0 : r0 + step]
        n = blk.size
        z = bufs.mask[:n]
        if inf2 is None:  # integer codes: no sign bit, and x + x could wrap to 0
            np.equal(blk, 0, out=z.reshape(blk.shape))
        else:
            m = bufs.mag[:n].reshape(blk.shape)
            np.add(blk, blk, out=m)
            if peak(m, axis=None) >= inf2:
                _nonfinite2(m, inf2, st)
            np.equal(m, 0, out=z.reshape(blk.shape))
        packed[r0 * pb : r0 * pb + n // 8] = np.packbits(z)  # rows are whole bytes: cols % 8 == 0
        release.after(r0 * row_bytes + n * mat.itemsize)
    _packed_structure(packed.reshape(rows, pb), st)


def _packed_structure(packed: np.ndarray, st: TensorStats) -> None:
    """Row zeros, all-zero columns and 2:4 / 4:8 counts from packed zero flags
    (``rows x cols/8`` bytes, big bit order: the high nibble is the first 4-group)."""
    rows, pb = packed.shape
    assert st.row_zeros is not None and st.col_all_zero is not None
    has24, has48 = "2:4" in st.nm_ok, "4:8" in st.nm_ok
    acc = np.uint16 if st.cols < 65536 else np.int64  # a row has <= cols zeros
    step = max(1, PACKED_CHUNK // pb)
    r = min(step, rows)
    c8, hi = (
        _scratch("c8", r * pb, np.uint8).reshape(r, pb),
        _scratch("hi", r * pb, np.uint8).reshape(r, pb),
    )
    ge = _scratch("ge", r * pb, bool).reshape(r, pb)
    two, four, shift = np.uint8(2), np.uint8(4), np.uint8(4)
    ok24 = ok48 = 0
    cols_open = True
    for r0 in range(0, rows, step):
        p = packed[r0 : r0 + step]
        n = p.shape[0]
        if n != r:
            c8, hi, ge = c8[:n], hi[:n], ge[:n]
        if not p.any():  # no zeros here (dense tensors): rows stay 0, every column has a non-zero
            if cols_open:
                st.col_all_zero[:] = False
                cols_open = False
            continue
        np.bitwise_count(p, out=c8)  # zeros per 8-group
        st.row_zeros[r0 : r0 + n] = c8.sum(axis=1, dtype=acc)
        if has48:
            np.greater_equal(c8, four, out=ge)
            ok48 += int(np.count_nonzero(ge))
        if has24:  # zeros of the first 4-group (high nibble), then of the second (the rest)
            np.right_shift(p, shift, out=hi)
            np.bitwise_count(hi, out=hi)
            np.greater_equal(hi, two, out=ge)
            ok24 += int(np.count_nonzero(ge))
            np.subtract(c8, hi, out=hi)
            np.greater_equal(hi, two, out=ge)
            ok24 += int(np.count_nonzero(ge))
        if cols_open:  # once every column has a non-zero, stop looking
            allz = np.unpackbits(np.bitwise_and.reduce(p, axis=0))
            st.col_all_zero &= allz.view(bool)[: st.cols]
            cols_open = bool(st.col_all_zero.any())
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

"""Bytes on disk as shipped, and exact projections of the same tensors in sparse layouts.

Formulas (b = bytes per element of the stored dtype, nnz = non-zeros, r x c = rows x cols):

- dense:          numel * b
- sparse-bitmask: nnz * b + r * ceil(c / 8) + r * 8 + 16
                  (compressed-tensors: values + per-row packed bitmask + int64 row offsets +
                  int64[2] shape)
- 2:4:            numel / 2 * b + r * ceil(c / 8) + 16
                  (compressed-tensors sparse-24-bitmask: half the values + packed bitmask + shape;
                  cuSPARSELt's 2-bit index per kept value is the same numel / 8 bytes). Applied to
                  tensors whose every 4-group along the input dim has >= 2 zeros; the others
                  stay dense (as compressed-tensors leaves non-conforming layers); n/a when no
                  tensor conforms.
- CSR:            nnz * (b + i) + (r + 1) * p, i = 4 (int32 column index, 8 if c >= 2^31),
                  p = 4 (int32 row pointer, 8 if nnz >= 2^31)

Projections apply to prunable linears; every other tensor counts at its dense size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

_ELEM_BYTES = {
    "BF16": 2, "BFLOAT16": 2, "F16": 2, "FLOAT16": 2, "F32": 4, "FLOAT32": 4, "FLOAT": 4,
    "F64": 8, "FLOAT64": 8, "DOUBLE": 8, "I8": 1, "U8": 1, "INT8": 1, "UINT8": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "I32": 4, "I64": 8,
}  # fmt: skip
LAYOUTS = ("dense", "sparse-bitmask", "2:4", "csr")
_I32_MAX = 2**31 - 1


def elem_bytes(dtype: str, nbytes: int, numel: int) -> float:
    """Bytes per element of the stored dtype; quantised types fall back to stored/numel."""
    b = _ELEM_BYTES.get(dtype.upper())
    if b is not None:
        return float(b)
    return nbytes / numel if numel else 0.0


def bitmask_bytes(rows: int, cols: int, nnz: int, b: float) -> int:
    return math.ceil(nnz * b) + rows * math.ceil(cols / 8) + rows * 8 + 16


def two_four_bytes(rows: int, cols: int, b: float) -> int:
    return math.ceil(rows * cols / 2 * b) + rows * math.ceil(cols / 8) + 16


def csr_bytes(rows: int, cols: int, nnz: int, b: float) -> int:
    i = 4 if cols <= _I32_MAX else 8
    p = 4 if nnz <= _I32_MAX else 8
    return math.ceil(nnz * b) + nnz * i + (rows + 1) * p


@dataclass(frozen=True)
class TensorSize:
    """Inputs of the projection for one tensor."""

    rows: int
    cols: int
    numel: int
    nnz: int
    stored_nbytes: int
    elem_bytes: float
    prunable: bool
    two_four: bool  # every 4-group along the input dim has >= 2 zeros

    def projected(self) -> dict[str, int]:
        dense = math.ceil(self.numel * self.elem_bytes)
        if not self.prunable or self.rows == 0:
            return dict.fromkeys(LAYOUTS, dense)
        r, c, b = self.rows, self.cols, self.elem_bytes
        return {
            "dense": dense,
            "sparse-bitmask": bitmask_bytes(r, c, self.nnz, b),
            "2:4": two_four_bytes(r, c, b) if self.two_four and c % 4 == 0 else dense,
            "csr": csr_bytes(r, c, self.nnz, b),
        }


class SizeFileDict(TypedDict):
    path: str
    bytes: int


class SizeReportDict(TypedDict):
    """``SizeReport.to_dict()``: a scan's ``size`` block and the size check's measurements."""

    format: str
    files: list[SizeFileDict]
    disk_bytes: int
    tensor_bytes: int
    projected: dict[str, int | None]
    saving_as_shipped: float
    verdict: str


@dataclass(frozen=True)
class SizeReport:
    format: str
    files: tuple[tuple[str, int], ...]
    disk_bytes: int  # every file of the checkpoint, measured
    tensor_bytes: int  # sum of TensorInfo.nbytes: the tensors as stored
    projected: dict[str, int | None]  # layout -> bytes of the same tensors; None if not possible
    verdict: str

    @property
    def saving_as_shipped(self) -> float:
        """What storing the tensors this way saves against the same dtype stored dense."""
        dense = self.projected.get("dense") or 0
        return 1 - self.tensor_bytes / dense if dense else 0.0

    def to_dict(self) -> SizeReportDict:
        return {
            "format": self.format,
            "files": [{"path": p, "bytes": b} for p, b in self.files],
            "disk_bytes": self.disk_bytes,
            "tensor_bytes": self.tensor_bytes,
            "projected": dict(self.projected),
            "saving_as_shipped": self.saving_as_shipped,
            "verdict": self.verdict,
        }


def size_report(
    fmt: str, files: Sequence[Path], tensors: Iterable[TensorSize], sparsity: float
) -> SizeReport:
    tl = list(tensors)
    projected: dict[str, int | None] = {}
    for layout in LAYOUTS:
        projected[layout] = sum(t.projected()[layout] or 0 for t in tl)
    if not any(t.prunable and t.two_four for t in tl):
        projected["2:4"] = None
    file_sizes = tuple((str(f), f.stat().st_size) for f in files if f.is_file())
    stored = sum(t.stored_nbytes for t in tl)
    rep = SizeReport(fmt, file_sizes, sum(s for _, s in file_sizes), stored, projected, "")
    return SizeReport(
        rep.format, rep.files, rep.disk_bytes, rep.tensor_bytes, projected, _verdict(rep, sparsity)
    )


def _verdict(rep: SizeReport, sparsity: float) -> str:
    saving = rep.saving_as_shipped
    best = min(
        ((k, v) for k, v in rep.projected.items() if v is not None and k != "dense"),
        key=lambda kv: kv[1],
        default=None,
    )
    dense = rep.projected.get("dense") or 0
    hint = ""
    if best is not None and dense and best[1] < dense:
        hint = f"; as {best[0]} the same tensors would take {human(best[1])} ({1 - best[1] / dense:.1%} saved)"
    if abs(saving) < 0.005:
        return (
            f"{sparsity:.1%} sparse but stored dense as {rep.format}: 0 bytes saved "
            f"({human(rep.tensor_bytes)} of tensors){hint}"
        )
    return f"stored as {rep.format}: {human(rep.tensor_bytes)} vs {human(dense)} dense at the same dtype ({saving:.1%} saved){hint}"


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"

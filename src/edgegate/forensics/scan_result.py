"""What a scan found, as frozen values (``ScanResult`` and its parts) and as the
``edgegate.scan/1`` JSON document their ``to_dict`` methods write."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

from typing_extensions import NotRequired  # typing has it from Python 3.11

from edgegate.checkpoint.base import ModuleKind
from edgegate.forensics.fingerprint import Comparison, ComparisonDict
from edgegate.forensics.size import SizeReport, SizeReportDict
from edgegate.forensics.sparsity import (
    Aggregate,
    AggregateDict,
    ClaimComparison,
    ClaimComparisonDict,
)
from edgegate.forensics.structure import TensorStructure, TensorStructureDict


class TensorReportDict(TypedDict):
    """``TensorReport.to_dict()``."""

    name: str
    canonical: str
    kind: str
    layer: int | None
    shape: list[int]
    dtype: str
    numel: int
    zeros: int
    sparsity: float
    nan: int
    inf: int
    nbytes: int
    structure: TensorStructureDict | None


class StructureSummaryDict(TypedDict):
    """``StructureSummary.to_dict()``."""

    nm_conformance: dict[str, float]
    zero_rows: int
    zero_cols: int
    zero_heads: int
    row_uniform_tensors: int
    pruned_tensors: int
    pattern: str


class SparsityDict(TypedDict):
    overall: AggregateDict
    prunable: AggregateDict
    by_kind: dict[str, AggregateDict]
    by_layer: dict[str, AggregateDict]


class NonfiniteDict(TypedDict):
    nan: int
    inf: int


class TimingDict(TypedDict):
    seconds: float
    bytes_scanned: int


class ScanDict(TypedDict):
    """``ScanResult.to_dict()``: the ``edgegate.scan/1`` document."""

    schema: str
    path: str
    format: str
    sparsity: SparsityDict
    nonfinite: NonfiniteDict
    claims: dict[str, float]
    claim_sources: dict[str, str]
    claimed_text: dict[str, str]
    sparsity_claim: ClaimComparisonDict | None
    structure: StructureSummaryDict
    size: SizeReportDict
    comparison: ComparisonDict | None
    timing: TimingDict
    tensors: NotRequired[list[TensorReportDict]]  # with per_tensor=True
    dense: NotRequired[ScanDict]  # `edgegate scan --json --against`: the dense scan too


@dataclass(frozen=True)
class TensorReport:
    name: str
    canonical: str
    kind: ModuleKind
    layer: int | None
    shape: tuple[int, ...]
    dtype: str
    numel: int
    zeros: int
    nan: int
    inf: int
    nbytes: int
    structure: TensorStructure | None = None

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    def to_dict(self) -> TensorReportDict:
        return {
            "name": self.name,
            "canonical": self.canonical,
            "kind": self.kind.value,
            "layer": self.layer,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "numel": self.numel,
            "zeros": self.zeros,
            "sparsity": self.sparsity,
            "nan": self.nan,
            "inf": self.inf,
            "nbytes": self.nbytes,
            "structure": self.structure.to_dict() if self.structure else None,
        }


@dataclass(frozen=True)
class StructureSummary:
    """Over prunable linears: how the zeros are laid out."""

    nm_conformance: Mapping[str, float]  # weighted by groups
    zero_rows: int
    zero_cols: int
    zero_heads: int
    row_uniform_tensors: int
    pruned_tensors: int  # prunable tensors with any zeros
    pattern: str  # "2:4", "4:8", "unstructured (row-uniform)", "unstructured", "dense"

    def to_dict(self) -> StructureSummaryDict:
        return {
            "nm_conformance": dict(self.nm_conformance),
            "zero_rows": self.zero_rows,
            "zero_cols": self.zero_cols,
            "zero_heads": self.zero_heads,
            "row_uniform_tensors": self.row_uniform_tensors,
            "pruned_tensors": self.pruned_tensors,
            "pattern": self.pattern,
        }


@dataclass(frozen=True)
class ScanResult:
    path: str
    format: str
    tensors: tuple[TensorReport, ...]
    overall: Aggregate
    prunable: Aggregate
    kinds: Mapping[str, Aggregate]
    layers: Mapping[int, Aggregate]
    nan: int
    inf: int
    structure: StructureSummary
    size: SizeReport
    claims: Mapping[str, float] = field(default_factory=dict)
    claim_sources: Mapping[str, str] = field(default_factory=dict)
    claimed_text: Mapping[str, str] = field(default_factory=dict)  # "method", "structure"
    sparsity_claim: ClaimComparison | None = None
    comparison: Comparison | None = None
    seconds: float = 0.0
    bytes_scanned: int = 0

    def to_dict(self, per_tensor: bool = False) -> ScanDict:
        out: ScanDict = {
            "schema": "edgegate.scan/1",
            "path": self.path,
            "format": self.format,
            "sparsity": {
                "overall": self.overall.to_dict(),
                "prunable": self.prunable.to_dict(),
                "by_kind": {k: a.to_dict() for k, a in self.kinds.items()},
                "by_layer": {str(k): a.to_dict() for k, a in self.layers.items()},
            },
            "nonfinite": {"nan": self.nan, "inf": self.inf},
            "claims": dict(self.claims),
            "claim_sources": dict(self.claim_sources),
            "claimed_text": dict(self.claimed_text),
            "sparsity_claim": self.sparsity_claim.to_dict() if self.sparsity_claim else None,
            "structure": self.structure.to_dict(),
            "size": self.size.to_dict(),
            "comparison": self.comparison.to_dict(self.size.disk_bytes)
            if self.comparison
            else None,
            "timing": {"seconds": self.seconds, "bytes_scanned": self.bytes_scanned},
        }
        if per_tensor:
            out["tensors"] = [t.to_dict() for t in self.tensors]
        return out


def summarize_structure(reports: list[TensorReport] | tuple[TensorReport, ...]) -> StructureSummary:
    pr = [r for r in reports if r.kind.prunable and r.structure is not None]
    pruned = [r for r in pr if r.zeros > 0]
    conf: dict[str, float] = {}
    for nm in ("2:4", "4:8"):
        m = int(nm[2])
        groups = [
            (r.numel // m, r.structure.nm_conformance[nm])
            for r in pr
            if r.structure and nm in r.structure.nm_conformance
        ]
        total = sum(g for g, _ in groups)
        if total:
            conf[nm] = sum(g * c for g, c in groups) / total
    s = [r.structure for r in pr if r.structure is not None]
    uniform = sum(1 for r in pruned if r.structure and r.structure.row_uniform)
    if not pruned:
        pattern = "dense"
    elif conf.get("2:4", 0.0) == 1.0:
        pattern = "2:4"
    elif conf.get("4:8", 0.0) == 1.0:
        pattern = "4:8"
    elif uniform == len(pruned):
        pattern = "unstructured (row-uniform)"
    else:
        pattern = "unstructured"
    return StructureSummary(
        nm_conformance=conf,
        zero_rows=sum(x.zero_rows for x in s),
        zero_cols=sum(x.zero_cols for x in s),
        zero_heads=sum(x.zero_heads or 0 for x in s),
        row_uniform_tensors=uniform,
        pruned_tensors=len(pruned),
        pattern=pattern,
    )

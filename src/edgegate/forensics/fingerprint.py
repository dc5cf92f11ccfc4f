"""Which pruning method left this mask? Compare the pruned mask with the dense weights.

For a tensor with k zeros, "agreement" is the fraction of those zeros that fall on the k
smallest-|w| dense entries (per tensor), or on each row's k_r smallest (per row). A random
mask of the same size agrees by chance with probability k/n (per row: sum k_r^2/cols / k),
so both numbers are reported next to that baseline. Also: did outlier ("super") weights of
down_proj survive, and were the surviving weights changed (quantisation, SparseGPT update)?
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from edgegate.checkpoint.base import Checkpoint, ModuleKind
from edgegate.forensics.ranking import changes, group_overlap, rank_keys, row_overlap
from edgegate.forensics.size import SizeReport, SizeReportDict
from edgegate.progress import Progress

# >= this fraction of zeros on the smallest weights: magnitude-ranked (exact magnitude pruning
# scores ~100%, bf16 ties aside; Wanda on a model with flat activation norms reaches ~94%)
MAGNITUDE_AGREEMENT = 0.98
SUPER_TOP_K = 8
SUPER_STD_MULTIPLE = 6.0  # an outlier is > 6 std of its tensor (Gaussian max of 1e8 draws ~ 6)


class MaskAgreementDict(TypedDict):
    """``MaskAgreement.to_dict()``: counts and agreement rates (NaN where nothing was pruned)."""

    pruned: int
    numel: int
    tensors: int
    tensor_agreement: float
    row_agreement: float
    random_tensor_agreement: float
    random_row_agreement: float
    group4_agreement: float
    random_group4_agreement: float
    changed_beyond_pruning: int
    kept: int
    max_abs_change: float
    row_uniform_tensors: int
    pruned_tensors: int
    nm_tensors: int


class FingerprintDict(MaskAgreementDict):
    """``Fingerprint.to_dict()``: the method, its evidence, then the summed counts."""

    method: str
    evidence: str


class SuperWeightDict(TypedDict):
    tensor: str
    row: int
    col: int
    dense_value: float
    compressed_value: float
    std_multiple: float
    zeroed: bool


class SuperWeightReportDict(TypedDict):
    tensors_examined: int
    top_k: int
    std_multiple: float
    candidates: int
    zeroed: int
    weights: list[SuperWeightDict]


class ComparisonDict(TypedDict):
    """``Comparison.to_dict()``: what ``--against DENSE`` adds to a scan report."""

    dense_path: str
    paired_tensors: int
    fingerprint: FingerprintDict
    super_weights: SuperWeightReportDict
    dense_size: SizeReportDict
    disk_saving_vs_dense: float | None


@dataclass(frozen=True)
class MaskAgreement:
    """Counts for one tensor (or summed over many)."""

    pruned: int  # k: zeros in the compressed tensor
    numel: int
    tensor_overlap: int  # zeros among the k smallest |w| of the dense tensor
    row_overlap: int  # zeros among each row's k_r smallest |w|
    row_random: float  # expected row overlap of a random mask with the same row counts
    changed: int  # non-zero compressed entries that differ from the dense value
    kept: int  # non-zero compressed entries
    max_abs_change: float
    row_uniform_tensors: int = 0
    tensors: int = 1
    group_overlap: int = 0  # zeros among each 4-group's k_g smallest |w| (N:M pruning)
    group_random: float = 0.0
    pruned_tensors: int = 0  # tensors with any zero
    nm_tensors: int = 0  # pruned tensors where every 4-group has the same number of zeros

    @property
    def tensor_agreement(self) -> float:
        return self.tensor_overlap / self.pruned if self.pruned else math.nan

    @property
    def row_agreement(self) -> float:
        return self.row_overlap / self.pruned if self.pruned else math.nan

    @property
    def group_agreement(self) -> float:
        return self.group_overlap / self.pruned if self.pruned else math.nan

    @property
    def random_group_agreement(self) -> float:
        return self.group_random / self.pruned if self.pruned else math.nan

    @property
    def random_tensor_agreement(self) -> float:
        return self.pruned / self.numel if self.numel else math.nan

    @property
    def random_row_agreement(self) -> float:
        return self.row_random / self.pruned if self.pruned else math.nan

    def __add__(self, o: MaskAgreement) -> MaskAgreement:
        return MaskAgreement(
            self.pruned + o.pruned,
            self.numel + o.numel,
            self.tensor_overlap + o.tensor_overlap,
            self.row_overlap + o.row_overlap,
            self.row_random + o.row_random,
            self.changed + o.changed,
            self.kept + o.kept,
            max(self.max_abs_change, o.max_abs_change),
            self.row_uniform_tensors + o.row_uniform_tensors,
            self.tensors + o.tensors,
            self.group_overlap + o.group_overlap,
            self.group_random + o.group_random,
            self.pruned_tensors + o.pruned_tensors,
            self.nm_tensors + o.nm_tensors,
        )

    def to_dict(self) -> MaskAgreementDict:
        return {
            "pruned": self.pruned,
            "numel": self.numel,
            "tensors": self.tensors,
            "tensor_agreement": self.tensor_agreement,
            "row_agreement": self.row_agreement,
            "random_tensor_agreement": self.random_tensor_agreement,
            "random_row_agreement": self.random_row_agreement,
            "group4_agreement": self.group_agreement,
            "random_group4_agreement": self.random_group_agreement,
            "changed_beyond_pruning": self.changed,
            "kept": self.kept,
            "max_abs_change": self.max_abs_change,
            "row_uniform_tensors": self.row_uniform_tensors,
            "pruned_tensors": self.pruned_tensors,
            "nm_tensors": self.nm_tensors,
        }


def mask_agreement(
    dense: np.ndarray, compressed: np.ndarray, row_uniform: bool = False
) -> MaskAgreement:
    """Agreement counts of ``compressed``'s zero mask with ``dense``'s magnitude ranking."""
    d = np.asarray(dense, dtype=np.float32).reshape(-1, dense.shape[-1] if dense.ndim else 1)
    c = np.asarray(compressed, dtype=np.float32).reshape(d.shape)
    mask = c == 0  # -0.0 == 0 is True
    k = int(np.count_nonzero(mask))
    cols = d.shape[1]
    kept = mask.size - k
    changed, max_change = changes(d, c, mask)
    if k == 0:
        return MaskAgreement(
            0, mask.size, 0, 0, 0.0, changed, kept, max_change, 0
        )  # no zeros: nothing to rank
    absd = np.abs(d)
    flat = absd.ravel()
    # argpartition picks among ties at the k-th value in its own way: kept as the definition
    smallest = np.argpartition(flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    t_overlap = int(np.count_nonzero(mask.ravel()[smallest]))
    keys = rank_keys(absd)
    kr = mask.sum(axis=1, dtype=np.int32)  # (the default int64 sum is ~2x slower)
    r_overlap = row_overlap(keys, mask, kr)
    r_random = float((kr.astype(np.float64) ** 2).sum() / cols)
    g_overlap, g_random, nm = group_overlap(keys, mask) if cols % 4 == 0 else (0, 0.0, False)
    return MaskAgreement(
        k, mask.size, t_overlap, r_overlap, r_random, changed, kept, max_change, int(row_uniform), 1,
        g_overlap, g_random, 1, int(nm),
    )  # fmt: skip


@dataclass(frozen=True)
class Fingerprint:
    method: str
    evidence: str
    totals: MaskAgreement

    def to_dict(self) -> FingerprintDict:
        return {"method": self.method, "evidence": self.evidence, **self.totals.to_dict()}


def classify(total: MaskAgreement) -> Fingerprint:
    ta, ra = total.tensor_agreement, total.row_agreement
    rt, rr = total.random_tensor_agreement, total.random_row_agreement
    ga = total.group_agreement
    if total.pruned == 0:
        return Fingerprint("none (no zeros)", "the compressed tensors contain no zeros", total)
    # chance agreement is binomial: allow 4 standard errors (plus 1 point) above it
    se = math.sqrt(max(rt * (1 - rt), 1e-12) / total.pruned)
    noise = 4 * se + 0.01
    uniform_share = (
        total.row_uniform_tensors / total.pruned_tensors if total.pruned_tensors else 0.0
    )
    # group ranking is only evidence for an N:M mask: any magnitude-correlated mask scores high
    # on 4-groups, so it is used only when every pruned tensor has equal zeros per group
    nm_mask = total.pruned_tensors > 0 and total.nm_tensors == total.pruned_tensors
    evidence = (
        f"zeros on smallest |w|: per-tensor {ta:.1%} (random {rt:.1%}), per-row {ra:.1%} "
        f"(random {rr:.1%}), per 4-group {ga:.1%} (random {total.random_group_agreement:.1%}); row-uniform tensors {total.row_uniform_tensors}/{total.pruned_tensors}; "
        f"n={total.pruned} pruned weights"
    )
    if ta >= MAGNITUDE_AGREEMENT and ta >= ra - 0.02:
        method = "magnitude (per-tensor)"
    elif ra >= MAGNITUDE_AGREEMENT:
        method = "magnitude (per-row)"
    elif nm_mask and ga >= MAGNITUDE_AGREEMENT:
        method = "magnitude (per 4-group, N:M)"
    elif ta <= rt + noise and ra <= rr + noise:
        method = "random"
    elif uniform_share >= 0.5:
        method = "activation-aware-like (row-uniform, not magnitude-ranked)"
    else:
        method = "other (not magnitude-ranked, not row-uniform)"
    return Fingerprint(method, evidence, total)


@dataclass(frozen=True)
class SuperWeight:
    tensor: str
    row: int
    col: int
    dense_value: float
    compressed_value: float
    std_multiple: float

    @property
    def zeroed(self) -> bool:
        return self.compressed_value == 0.0

    def to_dict(self) -> SuperWeightDict:
        return {
            "tensor": self.tensor,
            "row": self.row,
            "col": self.col,
            "dense_value": self.dense_value,
            "compressed_value": self.compressed_value,
            "std_multiple": self.std_multiple,
            "zeroed": self.zeroed,
        }


@dataclass(frozen=True)
class SuperWeightReport:
    candidates: tuple[SuperWeight, ...] = field(default_factory=tuple)
    tensors_examined: int = 0
    top_k: int = SUPER_TOP_K
    std_multiple: float = SUPER_STD_MULTIPLE

    @property
    def zeroed(self) -> int:
        return sum(s.zeroed for s in self.candidates)

    def to_dict(self) -> SuperWeightReportDict:
        return {
            "tensors_examined": self.tensors_examined,
            "top_k": self.top_k,
            "std_multiple": self.std_multiple,
            "candidates": len(self.candidates),
            "zeroed": self.zeroed,
            "weights": [s.to_dict() for s in self.candidates],
        }


def super_weights(
    name: str,
    dense: np.ndarray,
    compressed: np.ndarray,
    top_k: int = SUPER_TOP_K,
    multiple: float = SUPER_STD_MULTIPLE,
) -> list[SuperWeight]:
    """The top-k |w| of a dense down_proj that exceed ``multiple`` x its std, and what the
    compressed tensor holds at those positions."""
    d = np.asarray(dense, dtype=np.float32)
    d2 = d.reshape(-1, d.shape[-1])
    c2 = np.asarray(compressed, dtype=np.float32).reshape(d2.shape)
    flat = np.abs(d2).ravel()
    std = float(d2.std())
    if std == 0 or flat.size == 0:
        return []
    k = min(top_k, flat.size)
    idx = np.argpartition(flat, flat.size - k)[flat.size - k :]
    idx = idx[np.argsort(-flat[idx])]
    out = []
    for i in idx:
        if flat[i] <= multiple * std:
            continue
        r, col = divmod(int(i), d2.shape[1])
        out.append(
            SuperWeight(name, r, col, float(d2[r, col]), float(c2[r, col]), float(flat[i] / std))
        )
    return out


@dataclass(frozen=True)
class Comparison:
    """What ``--against DENSE`` adds to a scan."""

    dense_path: str
    fingerprint: Fingerprint
    super_weights: SuperWeightReport
    dense_size: SizeReport
    paired: int

    def to_dict(self, compressed_disk: int) -> ComparisonDict:
        d = self.dense_size.disk_bytes
        return {
            "dense_path": self.dense_path,
            "paired_tensors": self.paired,
            "fingerprint": self.fingerprint.to_dict(),
            "super_weights": self.super_weights.to_dict(),
            "dense_size": self.dense_size.to_dict(),
            "disk_saving_vs_dense": (1 - compressed_disk / d) if d else None,
        }


def compare_checkpoints(
    dense: Checkpoint,
    compressed: Checkpoint,
    dense_size: SizeReport,
    row_uniform: Mapping[str, bool],
    progress: Progress | None = None,
) -> Comparison:
    """Fingerprint the mask and look for destroyed outliers, tensor by tensor (float32,
    one pair in memory at a time). ``row_uniform`` maps canonical names to the scan's flag."""
    from edgegate.checkpoint import pair_tensors
    from edgegate.progress import NullProgress

    prog = progress or NullProgress()
    pairs = [
        (a, b) for a, b in pair_tensors(dense, compressed) if a.kind.prunable and len(a.shape) >= 2
    ]
    total: MaskAgreement | None = None
    supers: list[SuperWeight] = []
    n_down = 0
    with prog.task("comparing with the dense checkpoint", total=len(pairs)) as advance:
        for a, b in pairs:
            d, c = dense.read(a), compressed.read(b)
            agr = mask_agreement(d, c, row_uniform.get(b.canonical, False))
            total = agr if total is None else total + agr
            if a.kind is ModuleKind.DOWN:
                n_down += 1
                supers.extend(super_weights(a.canonical, d, c))
            del d, c
            advance(1)
    if total is None:
        total = MaskAgreement(0, 0, 0, 0, 0.0, 0, 0, 0.0, 0, 0, 0, 0.0, 0, 0)
    return Comparison(
        dense_path=str(dense.path),
        fingerprint=classify(total),
        super_weights=SuperWeightReport(tuple(supers), n_down),
        dense_size=dense_size,
        paired=len(pairs),
    )

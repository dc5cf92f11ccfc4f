"""Structure of a tensor's zero pattern from the kernel's counts: N:M conformance, all-zero
rows/columns/heads, and how uniform sparsity is across output rows.

Per-output-row uniform sparsity is the signature of row-wise pruning (Wanda, SparseGPT):
every row loses the same number of weights. Magnitude pruning over the whole tensor gives
rows whose sparsity varies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from edgegate.checkpoint.base import ModuleKind
from edgegate.forensics.zeros import TensorStats

UNIFORM_SPREAD = 0.01  # rows within 1% of the width of each other count as uniform


class TensorStructureDict(TypedDict):
    """``TensorStructure.to_dict()``."""

    nm_conformance: dict[str, float]
    zero_rows: int
    zero_cols: int
    zero_heads: int | None
    heads: int | None
    row_sparsity_min: float
    row_sparsity_max: float
    row_sparsity_std: float
    row_uniform: bool


@dataclass(frozen=True)
class TensorStructure:
    nm_conformance: Mapping[str, float]  # "2:4" -> fraction of groups with >= N zeros
    zero_rows: int
    zero_cols: int
    zero_heads: int | None  # attention heads whose whole slice is zero (q/k/v rows, o cols)
    heads: int | None
    row_sparsity_min: float
    row_sparsity_max: float
    row_sparsity_std: float
    row_uniform: bool

    def to_dict(self) -> TensorStructureDict:
        return {
            "nm_conformance": dict(self.nm_conformance),
            "zero_rows": self.zero_rows,
            "zero_cols": self.zero_cols,
            "zero_heads": self.zero_heads,
            "heads": self.heads,
            "row_sparsity_min": self.row_sparsity_min,
            "row_sparsity_max": self.row_sparsity_max,
            "row_sparsity_std": self.row_sparsity_std,
            "row_uniform": self.row_uniform,
        }


def head_layout(config: Mapping[str, Any] | None) -> tuple[int | None, int | None, int | None]:
    """(attention heads, kv heads, head_dim) from an HF config, None where unknown."""
    if not config:
        return None, None, None
    heads = config.get("num_attention_heads")
    kv = config.get("num_key_value_heads", heads)
    hd = config.get("head_dim")
    hidden = config.get("hidden_size")
    if hd is None and heads and hidden:
        hd = hidden // heads
    return (int(heads) if heads else None, int(kv) if kv else None, int(hd) if hd else None)


def structure_of(
    st: TensorStats, kind: ModuleKind, config: Mapping[str, Any] | None = None
) -> TensorStructure | None:
    if st.row_zeros is None or st.col_all_zero is None or st.rows == 0:
        return None
    rz = st.row_zeros
    row_sp = rz / st.cols
    conf = {nm: (st.nm_ok[nm] / g if g else 0.0) for nm, g in st.nm_groups.items()}
    zero_heads, heads = _zero_heads(st, kind, config)
    spread = float(row_sp.max() - row_sp.min())
    return TensorStructure(
        nm_conformance=conf,
        zero_rows=int(np.count_nonzero(rz == st.cols)),
        zero_cols=int(np.count_nonzero(st.col_all_zero)),
        zero_heads=zero_heads,
        heads=heads,
        row_sparsity_min=float(row_sp.min()),
        row_sparsity_max=float(row_sp.max()),
        row_sparsity_std=float(row_sp.std()),
        # uniform only means something for a pruned tensor
        row_uniform=bool(rz.sum() > 0 and spread <= max(UNIFORM_SPREAD, 1.0 / st.cols)),
    )


def _zero_heads(
    st: TensorStats, kind: ModuleKind, config: Mapping[str, Any] | None
) -> tuple[int | None, int | None]:
    _, _, hd = head_layout(config)
    if hd is None or st.row_zeros is None or st.col_all_zero is None:
        return None, None
    if kind in (ModuleKind.Q, ModuleKind.K, ModuleKind.V):
        n = st.rows // hd
        if n * hd != st.rows or n == 0:
            return None, None
        per_head = st.row_zeros.reshape(n, hd).sum(axis=1)
        return int(np.count_nonzero(per_head == hd * st.cols)), n
    if kind is ModuleKind.O:
        n = st.cols // hd
        if n * hd != st.cols or n == 0:
            return None, None
        return int(np.count_nonzero(st.col_all_zero.reshape(n, hd).all(axis=1))), n
    return None, None

"""Forensics: what a checkpoint really is, measured from its bytes.

- ``zeros``: the counting kernel (zeros incl. -0.0, NaN/Inf, per-row zeros, all-zero
  columns, 2:4 / 4:8 conformance) in one blocked pass over memory-mapped native bytes.
- ``sparsity``: per kind / layer / prunable / whole-model aggregates, claim vs actual + why.
- ``structure``: N:M, all-zero rows/columns/heads, row-uniformity per tensor.
- ``fingerprint``: with the dense original, which pruning method the mask looks like,
  super-weight survival, weights changed beyond pruning.
- ``size``: bytes on disk as shipped and exact projections in sparse layouts.
- ``scan``: orchestration and the JSON-able ``ScanResult``.
"""

from edgegate.forensics.scan import ScanResult, scan_checkpoint, scan_paths

__all__ = ["ScanResult", "scan_checkpoint", "scan_paths"]

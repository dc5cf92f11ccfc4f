"""The checkpoint scan as the static checks share it: one scan of each model per run, kept
in the run's ``SharedWork`` (the forensics layer below knows nothing of checks or runs)."""

from __future__ import annotations

from edgegate.checks.base import CheckContext
from edgegate.checks.sections import SizeSection, SparsitySection
from edgegate.forensics.scan import ScanResult, broken_reference, scan_paths
from edgegate.policy import check_default

ScanPair = tuple[ScanResult, ScanResult | None]  # (compressed, dense original or None)
_SCAN_THREADS = (
    2  # reader threads of a scan inside `edgegate check` (the CLI's own scan has --threads)
)


def shared_scans(ctx: CheckContext[SparsitySection] | CheckContext[SizeSection]) -> ScanPair:
    """The scans of a ``CheckContext``'s checkpoints, computed once and kept in
    ``ctx.shared`` (``scan_compressed`` / ``scan_dense``) for every check that needs them
    (sparsity and size). The scan carries the claims the runner resolved, with their sources."""
    comp, dense = ctx.shared.scan_compressed, ctx.shared.scan_dense
    if comp is None or (ctx.dense_path is not None and dense is None):
        claims = dict(ctx.claims)
        raw_tol = ctx.section.claim_tolerance
        tol = float(check_default("sparsity", "claim_tolerance") if raw_tol is None else raw_tol)
        comp, dense = scan_paths(
            ctx.compressed_path, ctx.dense_path, claims=claims,
            claim_sources={k: ctx.claim_source(k) for k in claims}, claim_tolerance=tol,
            threads=_SCAN_THREADS, progress=ctx.progress,
        )  # fmt: skip
        ctx.shared.scan_compressed, ctx.shared.scan_dense = comp, dense
    if dense is not None and dense.nan + dense.inf:
        raise broken_reference(dense)
    return comp, dense

"""Scan orchestration: one pass over a checkpoint's tensors, aggregated into a ``ScanResult``.

Tensors are scanned largest first on a small thread pool (numpy releases the GIL in the
counting kernel; tensors over ``PART_BYTES`` are split into row ranges so one embedding
matrix does not leave the other threads idle), each read as a memory map of its native
bytes whose pages are handed back as the kernel moves on, so memory stays at a few MB per
worker (formats that must be dequantised cost one float32 tensor per worker). Structure statistics are computed only for
prunable linears; ``compare`` adds the dense-vs-compressed forensics (mask fingerprint,
super weights, weights changed beyond pruning). The result types and their JSON document
are in ``scan_result`` (re-exported here).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.checkpoint.base import Checkpoint, TensorInfo
from edgegate.forensics.fingerprint import compare_checkpoints
from edgegate.forensics.scan_result import (
    ScanDict,
    ScanResult,
    StructureSummary,
    TensorReport,
    TensorReportDict,
    summarize_structure,
)
from edgegate.forensics.size import TensorSize, elem_bytes, size_report
from edgegate.forensics.sparsity import (
    TensorCount,
    aggregate,
    by_kind,
    by_layer,
    compare_claim,
)
from edgegate.forensics.structure import structure_of
from edgegate.forensics.zeros import (
    TensorStats,
    drop_scratch,
    merge_stats,
    row_parts,
    rows_of,
    tensor_stats,
)
from edgegate.progress import NullProgress, Progress

__all__ = [
    "PART_BYTES",
    "ScanDict",
    "ScanResult",
    "StructureSummary",
    "TensorReport",
    "TensorReportDict",
    "broken_reference",
    "merged",
    "metadata_claims",
    "scan_checkpoint",
    "scan_paths",
    "summarize_structure",
    "text_claims",
]


PART_BYTES = 32 << 20  # tensors larger than this are split by rows between the threads


def _stats_for(ckpt: Checkpoint, info: TensorInfo) -> TensorStats:
    arr = ckpt.read_native(info)
    try:
        return tensor_stats(arr, info.dtype, structure=_structure(info))
    finally:
        del arr  # drop the memory map now, not at the next GC


def _structure(info: TensorInfo) -> bool:
    return info.kind.prunable and len(info.shape) >= 2


def _scan_parallel(
    ckpt: Checkpoint,
    infos: list[TensorInfo],
    order: list[int],
    threads: int,
    done: Callable[[int, TensorStats], None],
) -> None:
    """Workers take tensors largest first from one queue; a worker that opens a tensor
    larger than ``PART_BYTES`` puts its other row ranges at the front of the queue, so a
    single embedding matrix keeps every thread busy. Nobody waits on anyone (no deadlock
    however few threads); each tensor's parts are merged by whoever finishes the last one."""
    work: deque[tuple[int, int, np.ndarray | None, tuple[int, int]]] = deque(
        (i, 0, None, (0, 0)) for i in order
    )
    lock = threading.Lock()
    parts: dict[int, list[TensorStats | None]] = {}
    results: queue.Queue[tuple[int, TensorStats | None, BaseException | None]] = queue.Queue()
    failed = threading.Event()

    def worker() -> None:
        while not failed.is_set():
            with lock:
                if not work:
                    return
                i, k, arr, (r0, r1) = work.popleft()
            try:
                info = infos[i]
                if arr is None:  # a whole tensor: open it, split it if large
                    arr = ckpt.read_native(info)
                    ranges = row_parts(arr, PART_BYTES)
                    if len(ranges) == 1:
                        results.put(
                            (i, tensor_stats(arr, info.dtype, structure=_structure(info)), None)
                        )
                        continue
                    with lock:
                        parts[i] = [None] * len(ranges)
                        work.extendleft(
                            (i, j, arr, ranges[j]) for j in range(len(ranges) - 1, 0, -1)
                        )
                    k, (r0, r1) = 0, ranges[0]
                st = tensor_stats(rows_of(arr, r0, r1), info.dtype, structure=_structure(info))
                del arr
                with lock:
                    got = parts[i]
                    got[k] = st
                    finished = all(p is not None for p in got)
                    if finished:
                        del parts[i]
                if finished:
                    results.put((i, merge_stats([p for p in got if p is not None]), None))
            except BaseException as e:  # handed to the caller's thread
                failed.set()
                results.put((i, None, e))
                return

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in range(threads):
            pool.submit(worker)
        try:
            for _ in range(len(infos)):
                i, st, err = results.get()
                if err is not None:
                    raise err
                assert st is not None
                done(i, st)
        finally:
            failed.set()  # on an error: the other workers stop at their next item


def scan_checkpoint(
    ckpt: Checkpoint,
    *,
    claims: Mapping[str, float] | None = None,
    claim_sources: Mapping[str, str] | None = None,
    claim_tolerance: float = 0.02,
    threads: int = 2,
    progress: Progress | None = None,
) -> ScanResult:
    """Measure every tensor of ``ckpt``. ``claims`` (e.g. {"sparsity": 0.5}) are merged by
    the caller; without them the checkpoint's own metadata claims are used."""
    prog = progress or NullProgress()
    t0 = time.perf_counter()
    infos = list(ckpt.tensors())
    if not infos:  # 0 of 0 weights would read as "0% sparse" and let an empty file pass the gate
        from edgegate.errors import CheckpointError

        raise CheckpointError(
            "the checkpoint holds no tensors",
            path=ckpt.path,
            hint="an empty header or graph; re-export the model",
        )
    total = sum(i.nbytes for i in infos)
    stats = _measure(ckpt, infos, threads, prog, total)
    reports = _tensor_reports(infos, stats, ckpt.config)
    counts = [TensorCount(r.kind, r.layer, r.zeros, r.numel) for r in reports]
    prunable = aggregate(c for c in counts if c.kind.prunable)
    kinds = by_kind(counts)
    layers = by_layer(counts)
    merged_claims, sources = merged(claims, claim_sources, ckpt)
    claim = None
    if "sparsity" in merged_claims:
        claim = compare_claim(
            merged_claims["sparsity"],
            sources.get("sparsity", "unknown"),
            prunable,
            kinds,
            layers,
            claim_tolerance,
        )
    sizes = [_tensor_size(r, st) for r, st in zip(reports, stats, strict=True) if st is not None]
    return ScanResult(
        path=str(ckpt.path),
        format=ckpt.format.value,
        tensors=tuple(reports),
        overall=aggregate(counts),
        prunable=prunable,
        kinds=kinds,
        layers=layers,
        nan=sum(r.nan for r in reports),
        inf=sum(r.inf for r in reports),
        structure=summarize_structure(reports),
        size=size_report(ckpt.format.value, ckpt.files, sizes, prunable.sparsity),
        claims=merged_claims,
        claim_sources=sources,
        claimed_text=text_claims(ckpt),
        sparsity_claim=claim,
        seconds=time.perf_counter() - t0,
        bytes_scanned=total,
    )


def _measure(
    ckpt: Checkpoint, infos: list[TensorInfo], threads: int, prog: Progress, total: int
) -> list[TensorStats | None]:
    """The statistics of every tensor, in ``infos``' order (the largest read first)."""
    order = sorted(range(len(infos)), key=lambda i: -infos[i].nbytes)
    stats: list[TensorStats | None] = [None] * len(infos)
    with prog.task(f"scanning {len(infos)} tensors", total=total) as advance:
        if threads <= 1:
            try:
                for i in order:
                    stats[i] = _stats_for(ckpt, infos[i])
                    advance(infos[i].nbytes)
            finally:
                drop_scratch()  # up to 1/16 of the largest tensor, not to be kept for the process's life
        else:

            def done(i: int, st: TensorStats) -> None:
                stats[i] = st
                advance(infos[i].nbytes)

            _scan_parallel(ckpt, infos, order, threads, done)
    return stats


def _tensor_reports(
    infos: list[TensorInfo], stats: list[TensorStats | None], config: Mapping[str, Any] | None
) -> list[TensorReport]:
    """One report per tensor: its statistics with the structure its kind and the config imply."""
    reports = []
    for info, st in zip(infos, stats, strict=True):
        assert st is not None
        reports.append(
            TensorReport(
                info.name, info.canonical, info.kind, info.layer, tuple(info.shape), info.dtype,
                st.numel, st.zeros, st.nan, st.inf, info.nbytes, structure_of(st, info.kind, config),
            )
        )  # fmt: skip
    return reports


def _tensor_size(r: TensorReport, st: TensorStats) -> TensorSize:
    two_four = bool(st.nm_groups.get("2:4")) and st.nm_ok.get("2:4") == st.nm_groups.get("2:4")
    return TensorSize(
        rows=st.rows if len(r.shape) >= 2 else 0,
        cols=st.cols,
        numel=r.numel,
        nnz=r.numel - r.zeros,
        stored_nbytes=r.nbytes,
        elem_bytes=elem_bytes(r.dtype, r.nbytes, r.numel),
        prunable=r.kind.prunable and len(r.shape) >= 2,
        two_four=two_four,
    )


def metadata_claims(ckpt: Checkpoint) -> tuple[dict[str, float], dict[str, str]]:
    """Claims a checkpoint makes about itself: pruning_meta.json / compressed-tensors
    sparsity_config beside the weights, or a ``claims`` mapping its reader put in metadata."""
    from edgegate.checkpoint.claims import metadata_claims as beside_weights

    out, where = beside_weights(ckpt.path, ckpt.config) if ckpt.path.exists() else ({}, {})
    src = {k: w or "checkpoint" for k, w in where.items()}
    md = ckpt.metadata or {}
    raw = md.get("claims")
    if isinstance(raw, Mapping):
        for k, v in raw.items():
            val = getattr(v, "value", v)
            if isinstance(val, (int, float)) and not isinstance(val, bool):
                out[str(k)] = float(val)
                src[str(k)] = str(
                    getattr(v, "source", None) or md.get("claims_source") or "checkpoint metadata"
                )
    return out, src


def text_claims(ckpt: Checkpoint) -> dict[str, str]:
    """What the checkpoint says about how it was made (method, structure), to set beside
    what the mask fingerprint and the structure scan show."""
    if not ckpt.path.exists():
        return {}
    from edgegate.checkpoint.claims import TEXT, from_checkpoint_dir

    found = from_checkpoint_dir(ckpt.path, ckpt.config)
    return {k: str(getattr(found, k)) for k in TEXT if getattr(found, k) is not None}


def merged(
    claims: Mapping[str, float] | None, sources: Mapping[str, str] | None, ckpt: Checkpoint
) -> tuple[dict[str, float], dict[str, str]]:
    """Caller's claims (CLI/policy) win over what the checkpoint says about itself."""
    from edgegate.claims import overlay

    given = claims or {}
    return overlay(
        metadata_claims(ckpt), (given, {k: (sources or {}).get(k, "cli") for k in given})
    )


def scan_paths(
    path: str | Path,
    against: str | Path | None = None,
    *,
    claims: Mapping[str, float] | None = None,
    claim_sources: Mapping[str, str] | None = None,
    claim_tolerance: float = 0.02,
    threads: int = 2,
    progress: Progress | None = None,
) -> tuple[ScanResult, ScanResult | None]:
    """Scan ``path`` (and ``against``, the dense original, with the comparison attached to
    the first result). Returns (compressed scan, dense scan or None)."""
    from edgegate.checkpoint import open_checkpoint

    with open_checkpoint(path) as ck:
        res = scan_checkpoint(
            ck, claims=claims, claim_sources=claim_sources, claim_tolerance=claim_tolerance,
            threads=threads, progress=progress,
        )  # fmt: skip
        if against is None:
            return res, None
        with open_checkpoint(against) as dk:
            dres = scan_checkpoint(dk, threads=threads, progress=progress)
            uniform = {
                t.canonical: bool(t.structure and t.structure.row_uniform) for t in res.tensors
            }
            comp = compare_checkpoints(dk, ck, dres.size, uniform, progress)
    claim = res.sparsity_claim
    if claim is not None:  # "left dense" is judged against the dense model's own zeros
        claim = compare_claim(
            claim.claimed,
            claim.source,
            res.prunable,
            res.kinds,
            res.layers,
            claim_tolerance,
            (dres.kinds, dres.layers),
        )
    return replace(res, comparison=comp, sparsity_claim=claim), dres


def broken_reference(dense: ScanResult) -> Exception:
    """NaN/Inf in the DENSE checkpoint. Every comparison against it (the saving,
    the mask fingerprint, later the perplexity and BBQ baselines) is meaningless, and nothing
    about the compressed model is at fault, so this is an input error (exit 2) naming the
    file and the first tensor, never a pass and never a policy failure of the compressed one."""
    from edgegate.errors import CheckpointError

    bad = [t for t in dense.tensors if t.nan or t.inf]
    first = bad[0].name if bad else None
    more = f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else ""
    return CheckpointError(
        f"the dense reference holds {dense.nan} NaN and {dense.inf} Inf weight(s) (in tensor '{first}'{more}); "
        "a comparison against a broken reference verifies nothing",
        path=dense.path,
        field="dense",
        hint="pass the original, finite dense checkpoint",
    )

"""Size check: does the claimed/required saving exist in the bytes actually shipped?

Policy section: ``min_saving`` (a fraction, or {format: fraction}) and ``claim_tolerance``.
The saving is measured against the dense original when there is one: on the tensor data when
both are in the same format (headers and metadata reported beside it, not judged), else on
disk; without a dense original, as the stored tensor bytes against the same tensors stored
dense at the same dtype (a dense-format pruned model saves nothing).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TypedDict

from edgegate.checks._scan import ScanPair, shared_scans
from edgegate.checks.base import (
    CheckContext,
    CheckResult,
    Measured,
    Needs,
    Shard,
    Status,
    Verdict,
    compare,
)
from edgegate.checks.sections import SizeSection
from edgegate.forensics.size import SizeReport, SizeReportDict, human


class _SizeMeasurements(TypedDict):
    size: SizeReportDict
    saving: float
    saving_basis: str  # what the saving was measured on (the module docstring's bases)


class SizeMeasurements(_SizeMeasurements, total=False):
    """The size check's measurements (the dense original's size when there is one)."""

    dense_size: SizeReportDict


SHARDED = False  # runs whole in shard 1 of a sharded run
SECTION = SizeSection
NEEDS: Needs[SizeSection] = Needs(local_files=True, on_swapped_inputs=True)


def measure(ctx: CheckContext[SizeSection], shard: Shard | None = None) -> ScanPair:
    """The scan of both checkpoints (shared with the sparsity check): sizes on disk and of
    the tensors, and the claims the runner resolved."""
    return shared_scans(ctx)


def judge(measurements: Sequence[Measured], section: SizeSection) -> CheckResult:
    t0 = time.perf_counter()
    res, dense = measurements[0][1]
    sz = res.size
    fmt = sz.format
    saving, basis = _saving(sz, dense.size if dense is not None else None)
    n = res.overall.numel
    verdicts = [
        _min_saving_verdict(section, fmt, saving, basis, n),
        _claim_verdict(res.claims.get("size_saving"), section, fmt, saving, basis, n),
    ]
    recorded: SizeMeasurements = {"size": sz.to_dict(), "saving": saving, "saving_basis": basis}
    if dense is not None:
        recorded["dense_size"] = dense.size.to_dict()
    summary = f"{fmt}: {saving:.1%} saved ({basis}); {sz.verdict}"
    return CheckResult.from_verdicts("size", verdicts, recorded, summary, time.perf_counter() - t0)


def _saving(sz: SizeReport, dense: SizeReport | None) -> tuple[float, str]:
    """The saving as a fraction and the words saying what it was measured on: the three bases
    of the module docstring, tried from the most to the least direct."""
    if dense is not None and dense.format == sz.format and dense.tensor_bytes and sz.tensor_bytes:
        # Same format: judge the tensor data, the part compression changes. The files around
        # it (headers, metadata such as a converter's `general.name`, tokenizer files) may
        # differ by a few bytes; a pruned GGUF 32 bytes larger than its dense twin saved
        # nothing, and that is what the verdict must say, not "the model grew".
        saving = 1 - sz.tensor_bytes / dense.tensor_bytes
        # rounded, so 32 bytes of 517 MiB read "0.0%", not "-0.0%"
        disk = round(1 - sz.disk_bytes / dense.disk_bytes, 6) + 0.0 if dense.disk_bytes else 0.0
        other = (sz.disk_bytes - sz.tensor_bytes) - (dense.disk_bytes - dense.tensor_bytes)
        basis = (
            f"{human(sz.tensor_bytes)} of tensor data vs {human(dense.tensor_bytes)} dense original; "
            f"on disk {human(sz.disk_bytes)} vs {human(dense.disk_bytes)}, {disk:.1%} saved"
            + (f", of which {other:+,} bytes outside the tensors" if other else "")
        )
        return saving, basis
    if dense is not None and dense.disk_bytes:
        saving = 1 - sz.disk_bytes / dense.disk_bytes
        return saving, f"{human(sz.disk_bytes)} on disk vs {human(dense.disk_bytes)} dense original"
    basis = f"{human(sz.tensor_bytes)} of tensors vs {human(sz.projected.get('dense') or 0)} dense at the same dtype"
    return sz.saving_as_shipped, basis


def _min_saving_verdict(
    section: SizeSection, fmt: str, saving: float, basis: str, n: int
) -> Verdict:
    # min_saving may be per format; a format the mapping leaves out is not judged, and says so
    raw_min = section.min_saving
    min_saving = raw_min.get(fmt) if isinstance(raw_min, Mapping) else raw_min
    if min_saving is None:
        return Verdict(
            "min_saving",
            Status.SKIPPED,
            f"no min_saving set for format '{fmt}'",
            saving,
            scope=fmt,
            n=n,
        )
    return compare(
        "min_saving",
        saving,
        ">=",
        float(min_saving),
        what=f"saving as shipped ({fmt}; {basis})",
        n=n,
        scope=fmt,
        test="file sizes",
    )


def _claim_verdict(
    claimed: float | None, section: SizeSection, fmt: str, saving: float, basis: str, n: int
) -> Verdict:
    # a claim is met within the tolerance; without one the measured saving is still reported
    tol = float(section.claim_tolerance)
    if claimed is None:
        return Verdict(
            "size_claim",
            Status.SKIPPED,
            f"no size_saving claim to verify; measured saving {saving:.1%}",
            saving,
            n=n,
            scope=fmt,
        )
    return compare(
        "size_claim",
        saving,
        ">=",
        float(claimed) - tol,
        what=f"saving vs claimed {float(claimed):.1%} - tolerance {tol:.1%} ({basis})",
        n=n,
        scope=fmt,
        test="file sizes",
        effect_size=saving - float(claimed),
        effect_size_name="actual - claimed saving",
    )

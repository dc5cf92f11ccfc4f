"""Sparsity check: is the checkpoint as sparse as claimed, and are its weights finite?

Policy section: ``claim_tolerance`` (absolute, on the prunable-linear fraction) and
``require_claim`` (no claim at all is then a failure, not a skip).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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
)
from edgegate.checks.sections import SparsitySection
from edgegate.forensics.fingerprint import FingerprintDict, SuperWeightReportDict
from edgegate.forensics.scan_result import NonfiniteDict, SparsityDict, StructureSummaryDict
from edgegate.forensics.sparsity import ClaimComparisonDict, compare_claim, pct


class _SparsityMeasurements(TypedDict):
    path: str
    format: str
    sparsity: SparsityDict
    nonfinite: NonfiniteDict
    structure: StructureSummaryDict
    sparsity_claim: ClaimComparisonDict | None
    claims: dict[str, float]


class SparsityMeasurements(_SparsityMeasurements, total=False):
    """The sparsity check's measurements: the compressed scan's blocks (``ScanDict``), the
    dense reference's non-finite count and, with a dense model, the comparison's blocks."""

    dense_nonfinite: NonfiniteDict
    fingerprint: FingerprintDict
    super_weights: SuperWeightReportDict


SHARDED = False  # a scan reads every tensor once; a sharded run does it in shard 1
SECTION = SparsitySection
# the scan runs on swapped inputs too: its numbers are what show the swap
NEEDS: Needs[SparsitySection] = Needs(local_files=True, on_swapped_inputs=True)


def measure(ctx: CheckContext[SparsitySection], shard: Shard | None = None) -> ScanPair:
    """Scan the checkpoint(s) (shared with the size check); the scan carries the claims the
    runner resolved, with their sources."""
    return shared_scans(ctx)


def judge(measurements: Sequence[Measured], section: SparsitySection) -> CheckResult:
    t0 = time.perf_counter()
    res, dense = measurements[0][
        1
    ]  # shared_scans raised (exit 2) if the dense reference holds NaN/Inf
    tol, require = float(section.claim_tolerance), bool(section.require_claim)
    claimed = res.claims.get("sparsity")
    source = res.claim_sources.get("sparsity", "checkpoint metadata")
    n = res.prunable.numel
    verdicts: list[Verdict] = []
    if claimed is None:
        status = Status.FAIL if require else Status.SKIPPED
        verdicts.append(
            Verdict(
                "sparsity_claim", status,
                "no sparsity claim to verify (none in the policy, --claim or checkpoint metadata)"
                + (" and require_claim is true" if require else f"; measured {pct(res.prunable.sparsity)}"),
                observed=res.prunable.sparsity, n=n, scope="prunable linears",
            )
        )  # fmt: skip
    else:
        ref = (
            (dense.kinds, dense.layers) if dense is not None else None
        )  # "left dense" vs the dense model's zeros
        cmp_ = compare_claim(float(claimed), source, res.prunable, res.kinds, res.layers, tol, ref)
        ok = abs(cmp_.delta) <= tol
        verdicts.append(
            Verdict(
                "sparsity_claim", Status.PASS if ok else Status.FAIL,
                f"actual {pct(cmp_.actual)} vs claimed {pct(cmp_.claimed)} ({source}), tolerance "
                f"{pct(tol)}: {cmp_.reason}",
                # the observed value is the gap to the claim, not the sparsity: the unit says so
                observed=abs(cmp_.delta), threshold=tol, comparator="<=", unit="gap |actual - claimed|", n=n,
                effect_size=cmp_.delta, effect_size_name="actual - claimed (fraction)",
                test="exact zero count (every weight read)", scope="prunable linears",
            )
        )  # fmt: skip
    bad = res.nan + res.inf
    verdicts.append(
        Verdict(
            "finite_weights", Status.PASS if bad == 0 else Status.FAIL,
            f"{res.nan} NaN and {res.inf} Inf among {res.overall.numel:,} weights",
            observed=float(bad), threshold=0.0, comparator="<=", n=res.overall.numel,
            test="exact count",
        )
    )  # fmt: skip
    meas = res.to_dict()
    recorded: SparsityMeasurements = {
        "path": meas["path"],
        "format": meas["format"],
        "sparsity": meas["sparsity"],
        "nonfinite": meas["nonfinite"],
        "structure": meas["structure"],
        "sparsity_claim": meas["sparsity_claim"],
        "claims": meas["claims"],
    }
    if (
        dense is not None
    ):  # the reference's count is reported too: its own zeros explain part of the compressed count
        recorded["dense_nonfinite"] = {"nan": dense.nan, "inf": dense.inf}
    if res.comparison is not None:
        recorded["fingerprint"] = res.comparison.fingerprint.to_dict()
        recorded["super_weights"] = res.comparison.super_weights.to_dict()
    summary = f"prunable-linear sparsity {pct(res.prunable.sparsity)} ({res.structure.pattern})"
    if claimed is not None:
        summary += f", claimed {pct(float(claimed))}"
    else:  # a pass here verified no claim; the one line every report shows must say so
        summary += ", no claim to verify" + (" (require_claim: fails)" if require else "")
    return CheckResult.from_verdicts(
        "sparsity", verdicts, recorded, summary, time.perf_counter() - t0
    )

"""The JSON report: everything the run measured and decided, versioned by ``schema_version``
and validated against ``edgegate/schemas/report.schema.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any, TypedDict

from edgegate.environment import EnvironmentInfo
from edgegate.escape import json_safe
from edgegate.gate import verification
from edgegate.results import (  # the entries of one check: results writes them
    CheckEntry,
    ErrorEntry,
    GateResult,
    IntervalEntry,
    VerdictEntry,
    jsonable,
)

# 2.0: status "incomplete" became "partial"/"unverified"; verification, findings, caveats
# 2.1: a check's gate may be "not-run" (fail-fast)
SCHEMA_VERSION = "2.1"
__all__ = ["CheckEntry", "ErrorEntry", "IntervalEntry", "ReportDocument", "VerdictEntry"]


class ToolEntry(TypedDict):
    name: str
    version: str | None


class VerificationEntry(TypedDict, total=False):
    """How much of what the policy requires was verified (gate.Verification)."""

    required: int
    verified: int
    not_verified: list[str]


class PolicyEntry(TypedDict, total=False):
    """The policy applied; ``resolved`` (the whole resolved policy) has no typed reader."""

    name: str
    source: str | None
    sha256: str | None


class ClaimsEntry(TypedDict, total=False):
    values: dict[str, float]
    sources: dict[str, str]  # claim -> where it came from


class ReportDocument(TypedDict, total=False):
    """The JSON report as its readers see it (edgegate.study.rows reads report files); the
    schema, schemas/report.schema.json, is the full contract, ``inputs`` included (no typed
    reader yet). Every key is optional to a reader: a study may keep reports of older schema
    versions, and tests build partial ones."""

    schema_version: str
    tool: ToolEntry
    status: str  # results.GateStatus
    exit_code: int
    reasons: list[str]
    notes: list[str]
    verification: VerificationEntry
    findings: list[dict[str, str]]
    caveats: list[str]
    strict: bool
    command: list[str]
    started_at: str
    finished_at: str
    duration_s: float
    policy: PolicyEntry
    claims: ClaimsEntry
    environment: EnvironmentInfo
    summary: dict[str, int]  # status -> number of checks
    checks: list[CheckEntry]


def build_report(gate: GateResult) -> ReportDocument:
    checks = []
    for o in gate.outcomes:
        d = o.result.to_dict()
        d.update(
            {
                "required": o.required,
                "selected": o.selected,
                "gate": str(o.gate),
                "gate_reason": o.reason,
            }
        )
        checks.append(d)
    counts: dict[str, int] = {}
    for o in gate.outcomes:
        counts[o.result.status.value] = counts.get(o.result.status.value, 0) + 1
    v = verification(gate.outcomes)
    report = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "edgegate", "version": gate.environment.get("edgegate")},
        "status": str(gate.status),
        "exit_code": gate.exit_code,
        "reasons": list(gate.reasons),
        "notes": list(gate.notes),
        "verification": {
            "required": v.required,
            "verified": v.verified,
            "not_verified": list(v.not_verified),
        },
        "findings": [dict(f) for f in gate.findings],
        "caveats": list(gate.caveats),
        "strict": gate.strict,
        "command": list(gate.argv),
        "started_at": gate.started_at,
        "finished_at": gate.finished_at,
        "duration_s": gate.duration_s,
        "policy": {
            "name": gate.policy.name,
            "source": gate.policy.source,
            "sha256": gate.policy.sha256,
            "resolved": gate.policy.to_dict(),
        },
        "claims": {"values": dict(gate.claims), "sources": dict(gate.claim_sources)},
        "inputs": list(gate.inputs),
        "environment": dict(gate.environment),
        "summary": counts,
        "checks": checks,
    }
    # names, paths and messages are untrusted: no control bytes, no lone surrogates (a
    # non-UTF-8 folder name) that a strict JSON parser would refuse
    out: ReportDocument = json_safe(jsonable(report))
    return out


def render(gate: GateResult) -> str:
    return json.dumps(build_report(gate), indent=2, sort_keys=False, allow_nan=False) + "\n"


@lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    text = resources.files("edgegate").joinpath("schemas/report.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_report(report: Mapping[str, Any]) -> list[str]:
    """Schema violations as 'path: message' (empty when valid); ``report``: any loaded JSON
    document, a ReportDocument or not."""
    import jsonschema

    v = jsonschema.Draft202012Validator(report_schema())
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in v.iter_errors(report)
    ]

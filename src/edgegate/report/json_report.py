"""The JSON report: everything the run measured and decided, versioned by ``schema_version``
and validated against ``edgegate/schemas/report.schema.json``."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from edgegate.escape import json_safe
from edgegate.gate import verification
from edgegate.results import GateResult, jsonable

# 2.0: status "incomplete" became "partial"/"unverified"; verification, findings, caveats
# 2.1: a check's gate may be "not-run" (fail-fast)
SCHEMA_VERSION = "2.1"


def build_report(gate: GateResult) -> dict[str, Any]:
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
    out: dict[str, Any] = json_safe(jsonable(report))
    return out


def render(gate: GateResult) -> str:
    return json.dumps(build_report(gate), indent=2, sort_keys=False, allow_nan=False) + "\n"


@lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    text = resources.files("edgegate").joinpath("schemas/report.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_report(report: dict[str, Any]) -> list[str]:
    """Schema violations as 'path: message' (empty when valid)."""
    import jsonschema

    v = jsonschema.Draft202012Validator(report_schema())
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in v.iter_errors(report)
    ]

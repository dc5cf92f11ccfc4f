"""``edgegate merge`` of ``edgegate check`` shards: one gate decision from every shard's
partial file, judged by the checks' own ``judge`` and the gate's own rules, so a merged run
reports exactly what a single run would (timings apart)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone

from edgegate import checks
from edgegate.errors import InputError
from edgegate.gate import decide
from edgegate.partial import Parts, first_difference
from edgegate.policy import Policy
from edgegate.results import CheckResult, GateResult, check_result_from_dict


def merge_gate(
    parts: Parts, policy: Policy, argv: Sequence[str] = (), allow_partial: bool = False
) -> GateResult:
    """One ``GateResult`` from every shard's partial file (already cross-checked by
    ``edgegate.partial.load_parts``)."""
    t0 = time.perf_counter()
    if parts.first.get("command") != "check":
        raise InputError(
            f"{parts.names[0]} was written by 'edgegate {parts.first.get('command')}', not 'edgegate check'",
            field="command",
            hint="merge 'edgegate bbq run' shards without --policy",
        )
    fp = parts.first["fingerprint"]
    settings = fp["settings"]
    strict = bool(settings["strict"])
    pol = policy.strict() if strict else policy
    d = first_difference(fp["policy"], pol.to_dict(), "policy")
    if d:
        raise InputError(
            f"cannot merge: --policy {policy.source or policy.name} differs from the policy the shards ran "
            f"(e.g. {parts.names[0]}) in {d[0]}: --policy has {d[2]!r}, the shards ran {d[1]!r}",
            field=d[0],
            hint="pass the policy file the shards were run with",
        )
    decision = decide(
        pol,
        strict,
        tuple(settings["only"]),
        tuple(settings["skip"]),
        lambda name: _merged_result(name, parts, pol),
        allow_partial,
    )
    g = parts.first["gate"]
    return GateResult(
        status=decision.status,
        exit_code=decision.exit_code,
        reasons=decision.reasons,
        notes=decision.notes,
        outcomes=decision.outcomes,
        policy=pol,
        strict=strict,
        claims=g["claims"],
        claim_sources=g["claim_sources"],
        inputs=tuple(g["inputs"]),
        environment=g["environment"],
        started_at=min(p["gate"]["started_at"] for p in parts.docs),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 6),
        argv=tuple(argv),
    )


def _merged_result(name: str, parts: Parts, policy: Policy) -> CheckResult:
    module = checks.load(name)
    if not checks.is_sharded(name) or module is None:
        got = parts.first["results"].get(name)
        if got is None:
            raise InputError(
                f"cannot merge: {parts.names[0]} (shard 1) has no result for check '{name}'",
                field=f"results.{name}",
                hint="re-run shard 1",
            )
        return check_result_from_dict(got, path=parts.names[0], where=f"results.{name}")
    # a shard that could not measure carries its result: that decides the merged check
    for pname, doc in zip(parts.names, parts.docs, strict=True):
        if name not in doc["checks"]:
            got = doc["results"].get(name)
            if got is None:
                raise InputError(
                    f"cannot merge: {pname} has no {name} data", field=f"checks.{name}"
                )
            return check_result_from_dict(
                got, path=pname, where=f"results.{name}"
            )  # as the unsharded run would report it
    measured = [
        (pname, doc["checks"][name]) for pname, doc in zip(parts.names, parts.docs, strict=True)
    ]
    return module.judge(measured, checks.section(name, policy.checks[name].section))

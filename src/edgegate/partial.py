"""Partial results of a sharded ``edgegate check`` and their merge into one gate decision.

A shard runs the gate with ``--shard i/n``: the BBQ check scores only that shard's items
(see ``edgegate.shard``), the perplexity check only the chunks k with k % n == i - 1 (both
models, per-token NLLs kept); the checks that are not split (sparsity, size, speed) run whole
in shard 1 only, and their results travel in shard 1's partial file. ``merge_gate``
rebuilds the outcomes in policy order and judges them with the runner's own rules, so a
merged run reports exactly what a single run would (timings apart).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgegate.checks.base import CheckResult, _jsonable
from edgegate.errors import InputError
from edgegate.policy import Policy
from edgegate.shard import (
    Parts,
    Shard,
    check_result_from_dict,
    differ,
    first_difference,
    input_identity,
    merge_bbq,
    software,
)

SHARDED = ("bbq", "perplexity")  # checks whose work is split across shards (items, chunks)
# Options that change no result (or whose identity is already in the inputs' sha256s).
_NOT_RESULTS = {
    "threads", "cache_dir", "backend_timeout", "bbq_data", "claim_sources", "partial_sink", "shard",
    "dense_endpoint", "compressed_endpoint",
}


def shard_skips(policy: Policy, shard: Shard) -> tuple[str, ...]:
    """Checks a shard other than 1 leaves out (they run whole in shard 1)."""
    if shard[0] == 1:
        return ()
    return tuple(c.name for c in policy.enabled_checks() if c.name not in SHARDED)


def fingerprint(
    policy: Policy, strict: bool, only: Sequence[str], skip: Sequence[str], cli_claims: Mapping[str, float],
    options: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Everything that decides a shard's results; shards of one run must agree on all of it."""
    pol = policy.strict() if strict else policy
    return {
        "policy": pol.to_dict(),
        "inputs": [input_identity(d) for d in inputs],
        "settings": {
            "strict": strict, "only": list(only), "skip": list(skip), "claims": dict(cli_claims),
            "options": {k: v for k, v in sorted(options.items())
                        if v is not None and (k not in _NOT_RESULTS or (k == "bbq_data" and str(v).startswith("hf:")))},
        },
        "software": software(),
    }


def check_payload(gate: Any, shard: Shard, sink: Mapping[str, Any]) -> dict[str, Any]:
    """The partial file's body for one shard of ``edgegate check``."""
    carried: dict[str, Any] = {}
    for o in gate.outcomes:
        if not o.selected:
            continue
        if o.name in SHARDED:
            if o.name not in sink:  # the check could not score (missing runtime, error): keep why
                carried[o.name] = o.result.to_dict()
        elif shard[0] == 1:
            carried[o.name] = o.result.to_dict()
    return {
        "gate": {
            "claims": dict(gate.claims), "claim_sources": dict(gate.claim_sources), "inputs": list(gate.inputs),
            "environment": dict(gate.environment), "argv": list(gate.argv), "started_at": gate.started_at,
        },
        "results": carried,
        "checks": {k: sink[k] for k in SHARDED if k in sink},
    }


def merge_gate(parts: Parts, policy: Policy, argv: Sequence[str] = ()) -> Any:
    """One ``GateResult`` from every shard's partial file (already cross-checked by
    ``edgegate.shard.load_parts``)."""
    from edgegate.runner import CheckOutcome, GateResult, _judge, _notes, _overall, select_checks

    t0 = time.perf_counter()
    if parts.first.get("command") != "check":
        raise InputError(f"{parts.names[0]} was written by 'edgegate {parts.first.get('command')}', not 'edgegate check'",
                         field="command", hint="merge 'edgegate bbq run' shards without --policy")
    fp = parts.first["fingerprint"]
    settings = fp["settings"]
    strict = bool(settings["strict"])
    pol = policy.strict() if strict else policy
    d = first_difference(fp["policy"], pol.to_dict(), "policy")
    if d:
        raise InputError(
            f"cannot merge: --policy {policy.source or policy.name} differs from the policy the shards ran "
            f"(e.g. {parts.names[0]}) in {d[0]}: --policy has {d[2]!r}, the shards ran {d[1]!r}",
            field=d[0], hint="pass the policy file the shards were run with",
        )
    only, skip = tuple(settings["only"]), tuple(settings["skip"])
    selected = select_checks(pol, only, skip)
    head = parts.first
    outcomes = []
    for cp in pol.enabled_checks():
        if cp.name not in selected:
            flag = "--only" if only else "--skip"
            res = CheckResult.skipped(cp.name, f"deselected with {flag}")
            outcomes.append(CheckOutcome(cp.name, cp.required, False, res, "deselected", res.summary))
            continue
        res = _merged_result(cp.name, parts)
        outcomes.append(_judge(cp.name, cp.required, res, pol, strict))
    status, code, reasons = _overall(outcomes, pol)
    g = head["gate"]
    return GateResult(
        status=status, exit_code=code, reasons=tuple(reasons), notes=tuple(_notes(outcomes)),
        outcomes=tuple(outcomes), policy=pol, strict=strict, claims=g["claims"], claim_sources=g["claim_sources"],
        inputs=tuple(g["inputs"]), environment=g["environment"], started_at=min(p["gate"]["started_at"] for p in parts.docs),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 6), argv=tuple(argv),
    )


def _merged_result(name: str, parts: Parts) -> CheckResult:
    if name not in SHARDED:
        got = parts.first["results"].get(name)
        if got is None:
            raise InputError(f"cannot merge: {parts.names[0]} (shard 1) has no result for check '{name}'",
                             field=f"results.{name}", hint="re-run shard 1")
        return check_result_from_dict(got)
    # a shard that could not score carries its result: that decides the merged check
    for pname, doc in zip(parts.names, parts.docs, strict=True):
        if name not in doc["checks"]:
            got = doc["results"].get(name)
            if got is None:
                raise InputError(f"cannot merge: {pname} has no {name} data", field=f"checks.{name}")
            return check_result_from_dict(got)  # as the unsharded run would report it
    named = [(pname, doc["checks"][name]) for pname, doc in zip(parts.names, parts.docs, strict=True)]
    return merge_bbq(named) if name == "bbq" else merge_ppl(named)


# ------------------------------------------------------------------ perplexity chunks


def ppl_shard(
    dense: str | Path, compressed: str | Path, *, shard: Shard, settings: Mapping[str, Any], runtime: str,
    text: str | None, n_ctx: int, mode: str, threads: int | None, cache_dir: str | Path | None,
    timeout: float | None, progress: Any = None,
) -> dict[str, Any]:
    """Score this shard's chunks with both models; per-token NLLs, never the aggregate."""
    from edgegate import ppl

    body = ppl.default_text() if text is None else text
    if not body.strip():
        raise InputError("the evaluation text is empty", field="text")
    t0 = time.perf_counter()
    with ppl.open_pair(dense, compressed, body, runtime=runtime, n_ctx=n_ctx, threads=threads,
                       cache_dir=cache_dir, timeout=timeout) as (d, c, extra):
        chunking = ppl.chunk_text(d, body, n_ctx, mode)  # type: ignore[arg-type]
        idx = [k for k in range(len(chunking.chunks)) if k % shard[1] == shard[0] - 1]
        nll, seconds = {}, {}
        for role, be in (("dense", d), ("compressed", c)):
            t1 = time.perf_counter()
            nll[role] = [a.tolist() for a in ppl.chunk_nlls(be, chunking, idx, progress=progress, label=role)]
            seconds[role] = time.perf_counter() - t1
            extra[f"{role}_ident"] = {"runtime": str(getattr(be, "runtime", "")), "model": str(getattr(be, "model_path", ""))}
    digest = hashlib.sha256(json.dumps([list(ch) for ch in chunking.chunks]).encode()).hexdigest()
    return {
        "settings": dict(settings),
        "chunking": {"n_ctx": chunking.n_ctx, "mode": chunking.mode, "first": chunking.first,
                     "n_chunks": len(chunking.chunks), "n_eval": sum(len(ch) for ch in chunking.chunks),
                     "tokens_sha256": digest},
        "indices": idx, "nll": nll, "seconds": seconds, "extra": _jsonable(extra),
        "duration_s": time.perf_counter() - t0,
    }


def merge_ppl(parts: Sequence[tuple[str, Mapping[str, Any]]]) -> CheckResult:
    """The perplexity check's result from every shard's per-chunk NLLs."""
    import numpy as np

    from edgegate import ppl
    from edgegate.checks.perplexity import result_from_comparison

    first_name, first = parts[0]
    for pname, p in parts[1:]:
        for key in ("settings", "chunking"):
            if first_difference(first[key], p[key]):
                raise differ(first_name, pname, f"checks.perplexity.{key}", first[key], p[key])
    owner: dict[int, str] = {}
    nll: dict[str, dict[int, list[float]]] = {"dense": {}, "compressed": {}}
    for pname, p in parts:
        for j, k in enumerate(p["indices"]):
            if k in owner:
                raise InputError(f"cannot merge: perplexity chunk {k} is in both {owner[k]} and {pname} (overlapping shards)",
                                 field="checks.perplexity.indices")
            owner[k] = pname
            for role in nll:
                nll[role][k] = p["nll"][role][j]
    ch = first["chunking"]
    missing = [k for k in range(int(ch["n_chunks"])) if k not in owner]
    if missing:
        raise InputError(f"cannot merge: perplexity chunk(s) {missing[:5]} scored by no shard", field="checks.perplexity.indices")
    results = {}
    for role in nll:
        arrays = [np.asarray(nll[role][k], dtype=np.float64) for k in range(int(ch["n_chunks"]))]
        ident = first["extra"].get(f"{role}_ident", {})
        results[role] = ppl.result_from_nlls(
            arrays, n_ctx=int(ch["n_ctx"]), mode=str(ch["mode"]), n_eval=int(ch["n_eval"]),
            seconds=sum(float(p["seconds"][role]) for _, p in parts),
            runtime=str(ident.get("runtime", "")), model=str(ident.get("model", "")),
        )
    cmp = ppl.compare(results["dense"], results["compressed"])
    cmp.extra.update({k: v for k, v in first["extra"].items() if not k.endswith("_ident")})
    return result_from_comparison(cmp, first["settings"], sum(float(p["duration_s"]) for _, p in parts))

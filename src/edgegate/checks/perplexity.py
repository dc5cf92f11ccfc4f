"""Perplexity check: does the compressed model still model text about as well?

Policy section ``perplexity``: runtime, max_relative_increase, n_ctx, text (null = the
embedded evaluation text), min_chunks; ``mode`` (chunked|full, default chunked) if present.

Decision rule: the point estimate of the relative increase ppl_c/ppl_d - 1 (both models on
the very same token stream) must be <= max_relative_increase. The paired 95% CI over chunks
is reported with it, not used to pass or fail: perplexity is a guard-rail metric and the
paper this tool follows shows it can stay flat while bias rises, so it is the BBQ check that
carries the statistical burden. Fewer than ``min_chunks`` chunks is INCONCLUSIVE, never a
pass. Different tokenizers are an input error (the check reports ERROR, exit 2 via the CLI).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any, TypedDict

from edgegate.checks._scoring import text_inputs
from edgegate.checks.base import (
    CheckContext,
    CheckResult,
    Cost,
    Evidence,
    Interval,
    Measured,
    Needs,
    RuntimeUse,
    ScoringPass,
    Shard,
    Status,
    Verdict,
    compare,
    jsonable,
)
from edgegate.checks.sections import PerplexitySection
from edgegate.errors import InputError
from edgegate.partial import differ, first_difference

SHARDED = True  # chunk k is scored by shard k % n + 1
SECTION = PerplexitySection


class Settings(TypedDict):
    """The section's thresholds and the pass's settings, as each shard records them."""

    runtime: str
    n_ctx: int
    min_chunks: int
    max_relative_increase: float


NEEDS = Needs(runtime=RuntimeUse.ONE, data=text_inputs("perplexity"), cost=Cost.PASS)


def measure(
    ctx: CheckContext[PerplexitySection], shard: Shard | None = None
) -> dict[str, Any] | None:
    """Per-token NLLs of both models on this shard's chunks (every chunk when unsharded),
    never the aggregate; None without a dense model. When the fidelity check already scored
    the same chunks with the same models (``checks._scoring``), its NLLs are used: one pass."""
    from edgegate.checks import _scoring

    sec = ctx.section
    s = _scoring.setup(ctx, "perplexity")
    if s is None:
        return None
    settings = Settings(
        runtime=s.runtime,
        n_ctx=s.n_ctx,
        min_chunks=int(sec.min_chunks),
        max_relative_increase=float(sec.max_relative_increase),
    )
    shared = _scoring.reuse(ctx, s, shard)
    if shared is None:
        return {"settings": settings, **_scoring.run_pass(ctx, s, shard, fidelity=False)}
    out: ScoringPass = {**shared}
    out.pop("fidelity", None)
    # the pass's time is the fidelity check's; this check took none of its own
    out["extra"] = {
        **out["extra"],
        "scored_in": "the fidelity check's pass (one scoring pass for both checks)",
    }
    return {"settings": settings, **out, "duration_s": 0.0}


def already_measured(ctx: CheckContext[PerplexitySection]) -> bool:
    """The fidelity check's pass already scored these chunks with these models."""
    from edgegate.checks import _scoring

    s = _scoring.setup(ctx, "perplexity")
    return s is not None and _scoring.reuse(ctx, s, ctx.shard) is not None


def judge(measurements: Sequence[Measured], section: PerplexitySection) -> CheckResult:
    """The verdict from every shard's per-chunk NLLs (the thresholds each shard recorded:
    a merge has checked that they agree with each other and with the policy)."""
    import numpy as np

    from edgegate import perplexity as ppl

    first_name, first = measurements[0]
    if first is None:
        return CheckResult.skipped(
            "perplexity", "the perplexity check needs the dense model to compare against"
        )
    for pname, p in measurements[1:]:
        for key in ("settings", "chunking"):
            if first_difference(first[key], p[key]):
                raise differ(first_name, pname, f"checks.perplexity.{key}", first[key], p[key])
    owner: dict[int, str] = {}
    nll: dict[str, dict[int, list[float]]] = {"dense": {}, "compressed": {}}
    for pname, p in measurements:
        for j, k in enumerate(p["indices"]):
            if k in owner:
                raise InputError(
                    f"cannot merge: perplexity chunk {k} is in both {owner[k]} and {pname} (overlapping shards)",
                    field="checks.perplexity.indices",
                )
            owner[k] = pname
            for role in nll:
                nll[role][k] = p["nll"][role][j]
    ch = first["chunking"]
    missing = [k for k in range(int(ch["n_chunks"])) if k not in owner]
    if missing:
        raise InputError(
            f"cannot merge: perplexity chunk(s) {missing[:5]} scored by no shard",
            field="checks.perplexity.indices",
        )
    results = {}
    for role in nll:
        arrays = [np.asarray(nll[role][k], dtype=np.float64) for k in range(int(ch["n_chunks"]))]
        ident = first["extra"].get(f"{role}_ident", {})
        results[role] = ppl.result_from_nlls(
            arrays,
            n_ctx=int(ch["n_ctx"]),
            mode=str(ch["mode"]),
            n_eval=int(ch["n_eval"]),
            seconds=sum(float(p["seconds"][role]) for _, p in measurements),
            runtime=str(ident.get("runtime", "")),
            model=str(ident.get("model", "")),
        )
    cmp = ppl.compare(results["dense"], results["compressed"])
    cmp.extra.update({k: v for k, v in first["extra"].items() if not k.endswith("_ident")})
    kept = [p["extra"].get("result_cache") for _, p in measurements]
    if all(kept):  # chunks scored vs taken from the result cache, summed over the shards
        cmp.extra["result_cache"] = {
            role: {key: sum(int(k[role][key]) for k in kept) for key in ("chunks", "from_cache")}
            for role in ("dense", "compressed")
        }
    res = result_from_comparison(
        cmp, first["settings"], sum(float(p["duration_s"]) for _, p in measurements)
    )
    if first.get("runtime_choice"):  # `runtime: auto`: the report names the runtime chosen and why
        res = replace(
            res, measurements={**res.measurements, "runtime_choice": dict(first["runtime_choice"])}
        )
    return res


def result_from_comparison(cmp: Any, settings: Settings, duration_s: float) -> CheckResult:
    """The check's result from the paired comparison: shared by a single run and
    ``edgegate merge`` of sharded runs."""
    runtime, n_ctx = str(settings["runtime"]), int(settings["n_ctx"])
    min_chunks, thr = int(settings["min_chunks"]), float(settings["max_relative_increase"])
    d, c = cmp.dense, cmp.compressed
    ci = Interval(cmp.ci_low, cmp.ci_high, cmp.level, cmp.test)
    extra = Evidence(
        unit="relative (0.05 = +5%)",
        n=cmp.n,
        ci=ci,
        effect_size=cmp.relative_change,
        effect_size_name="relative perplexity change",
        test=cmp.test,
        scope=runtime,
    )
    what = (
        f"relative perplexity increase ({runtime}, {d.mode}, n_ctx {d.n_ctx}: "
        f"{d.ppl:.4g} -> {c.ppl:.4g}, 95% CI [{cmp.ci_low:+.2%}, {cmp.ci_high:+.2%}] over {cmp.n} chunks)"
    )
    vocab = cmp.extra.get("vocab_size")
    if isinstance(vocab, int) and vocab > 1 and d.ppl > vocab:
        # Worse than a uniform guess over the vocabulary: the model cannot read this text, and a
        # relative change between two such numbers says nothing about compression damage.
        v = Verdict(
            "max_relative_increase",
            Status.INCONCLUSIVE,
            f"the dense model is worse than uniform guessing on this text (perplexity {d.ppl:.4g} > "
            f"vocabulary {vocab:,}): the text is not one the model can read; set checks.perplexity.text "
            "to text in the model's language and domain",
            observed=cmp.relative_change,
            threshold=thr,
            comparator="<=",
            **extra,
        )
    elif cmp.n < min_chunks:
        v = Verdict(
            "max_relative_increase",
            Status.INCONCLUSIVE,
            f"only {cmp.n} chunks of {n_ctx} tokens (< min_chunks {min_chunks}); use a longer text or smaller n_ctx",
            observed=cmp.relative_change,
            threshold=thr,
            comparator="<=",
            **extra,
        )
    else:
        v = compare("max_relative_increase", cmp.relative_change, "<=", thr, what=what, **extra)
    measurements = jsonable(asdict(cmp))
    source = (cmp.extra.get("text") or {}).get("source", "")
    summary = f"PPL {d.ppl:.4g} -> {c.ppl:.4g} ({cmp.relative_change:+.2%}) on {runtime}" + (
        f", text: {source}" if source else ""
    )
    if v.status is Status.INCONCLUSIVE and vocab and d.ppl > vocab:
        summary += " (inconclusive: worse than uniform)"
    return CheckResult.from_verdicts("perplexity", [v], measurements, summary, duration_s)

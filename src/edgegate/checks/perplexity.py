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

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgegate.checks.base import (
    THIS_RUN,
    CheckContext,
    CheckResult,
    Interval,
    Measured,
    Shard,
    Status,
    Verdict,
    compare,
    jsonable,
)
from edgegate.errors import DatasetError, InputError
from edgegate.partial import differ, first_difference

SHARDED = True  # chunk k is scored by shard k % n + 1


def measure(ctx: CheckContext, shard: Shard | None = None) -> dict[str, Any] | None:
    """Per-token NLLs of both models on this shard's chunks (every chunk when unsharded),
    never the aggregate; None without a dense model."""
    from edgegate import ppl
    from edgegate.backends.pair import OpenSettings, open_pair

    t0 = time.perf_counter()
    if ctx.dense_path is None:
        return None
    sec = ctx.section
    runtime = str(sec.get("runtime") or "llamacpp")
    n_ctx = int(sec.get("n_ctx", 512))
    settings = {"runtime": runtime, "n_ctx": n_ctx, "min_chunks": int(sec.get("min_chunks", 4)),
                "max_relative_increase": float(sec.get("max_relative_increase", 0.05))}
    text = None
    if sec.get("text"):
        from edgegate.policy import relative_to_policy

        # issue 15: a relative path resolves against the policy's folder, not the cwd
        p = relative_to_policy(str(sec["text"]), ctx.policy_dir)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read the perplexity text: {exc}", path=p, field="checks.perplexity.text") from exc
    models: tuple[str | Path, str | Path] = (ctx.dense_path, ctx.compressed_path)
    if ctx.settings.endpoints:  # models on servers
        settings["runtime"] = runtime = "openai"
        models = (str(ctx.settings.dense_endpoint), str(ctx.settings.compressed_endpoint))
    body = ppl.evaluation_text(text)
    # Which text was scored is part of the evidence: a reviewer must be able to tell the
    # embedded text from a file, and one file from another.
    text_id = {"source": str(sec["text"]) if sec.get("text") else "embedded (edgegate's evaluation text)",
               "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(), "chars": len(body)}
    opening = OpenSettings(n_ctx=n_ctx, threads=ctx.settings.threads, cache_dir=ctx.settings.cache_dir,
                           timeout=ctx.settings.backend_timeout)
    with open_pair(runtime, models, opening) as pair:
        extra = ppl.same_tokenizer(pair, body)
        chunking = ppl.chunk_text(pair.dense, body, n_ctx, str(sec.get("mode", "chunked")))  # type: ignore[arg-type]
        i, n = shard or (1, 1)
        idx = [k for k in range(len(chunking.chunks)) if k % n == i - 1]
        nll, seconds = {}, {}
        for role in ("dense", "compressed"):
            be = pair.open(role)
            t1 = time.perf_counter()
            nll[role] = [a.tolist() for a in ppl.chunk_nlls(be, chunking, idx, progress=ctx.progress, label=role)]
            seconds[role] = time.perf_counter() - t1
            extra[f"{role}_ident"] = {"runtime": str(be.runtime), "model": str(be.model_path)}
        extra["vocab_size"] = int(pair.dense.n_vocab or 0) or None
    extra["text"] = {**text_id, "tokens_scored": sum(len(ch) for ch in chunking.chunks)}
    digest = hashlib.sha256(json.dumps([list(ch) for ch in chunking.chunks]).encode()).hexdigest()
    return {
        "settings": settings,
        "chunking": {"n_ctx": chunking.n_ctx, "mode": chunking.mode, "first": chunking.first,
                     "n_chunks": len(chunking.chunks), "n_eval": sum(len(ch) for ch in chunking.chunks),
                     "tokens_sha256": digest},
        "indices": idx, "nll": nll, "seconds": seconds, "extra": jsonable(extra),
        "duration_s": time.perf_counter() - t0,
    }


def run(ctx: CheckContext) -> CheckResult:
    return judge([(THIS_RUN, measure(ctx))], ctx.section)


def judge(measurements: Sequence[Measured], section: Mapping[str, Any]) -> CheckResult:
    """The verdict from every shard's per-chunk NLLs (the thresholds each shard recorded:
    a merge has checked that they agree with each other and with the policy)."""
    import numpy as np

    from edgegate import ppl

    first_name, first = measurements[0]
    if first is None:
        return CheckResult.skipped("perplexity", "the perplexity check needs the dense model to compare against")
    for pname, p in measurements[1:]:
        for key in ("settings", "chunking"):
            if first_difference(first[key], p[key]):
                raise differ(first_name, pname, f"checks.perplexity.{key}", first[key], p[key])
    owner: dict[int, str] = {}
    nll: dict[str, dict[int, list[float]]] = {"dense": {}, "compressed": {}}
    for pname, p in measurements:
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
            seconds=sum(float(p["seconds"][role]) for _, p in measurements),
            runtime=str(ident.get("runtime", "")), model=str(ident.get("model", "")),
        )
    cmp = ppl.compare(results["dense"], results["compressed"])
    cmp.extra.update({k: v for k, v in first["extra"].items() if not k.endswith("_ident")})
    return result_from_comparison(cmp, first["settings"], sum(float(p["duration_s"]) for _, p in measurements))


def result_from_comparison(cmp: Any, settings: Mapping[str, Any], duration_s: float) -> CheckResult:
    """The check's result from the paired comparison: shared by a single run and
    ``edgegate merge`` of sharded runs."""
    runtime, n_ctx = str(settings["runtime"]), int(settings["n_ctx"])
    min_chunks, thr = int(settings["min_chunks"]), float(settings["max_relative_increase"])
    d, c = cmp.dense, cmp.compressed
    ci = Interval(cmp.ci_low, cmp.ci_high, cmp.level, cmp.test)
    extra: dict[str, Any] = dict(
        unit="", n=cmp.n, ci=ci, effect_size=cmp.relative_change,
        effect_size_name="relative perplexity change", test=cmp.test, scope=runtime,
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
            "max_relative_increase", Status.INCONCLUSIVE,
            f"the dense model is worse than uniform guessing on this text (perplexity {d.ppl:.4g} > "
            f"vocabulary {vocab:,}): the text is not one the model can read; set checks.perplexity.text "
            "to text in the model's language and domain",
            observed=cmp.relative_change, threshold=thr, comparator="<=", **extra,
        )
    elif cmp.n < min_chunks:
        v = Verdict(
            "max_relative_increase", Status.INCONCLUSIVE,
            f"only {cmp.n} chunks of {n_ctx} tokens (< min_chunks {min_chunks}); use a longer text or smaller n_ctx",
            observed=cmp.relative_change, threshold=thr, comparator="<=", **extra,
        )
    else:
        v = compare("max_relative_increase", cmp.relative_change, "<=", thr, what=what, **extra)
    measurements = jsonable(asdict(cmp))
    source = (cmp.extra.get("text") or {}).get("source", "")
    summary = f"PPL {d.ppl:.4g} -> {c.ppl:.4g} ({cmp.relative_change:+.2%}) on {runtime}" + (f", text: {source}" if source else "")
    if v.status is Status.INCONCLUSIVE and vocab and d.ppl > vocab:
        summary += " (inconclusive: worse than uniform)"
    return CheckResult.from_verdicts("perplexity", [v], measurements, summary, duration_s)

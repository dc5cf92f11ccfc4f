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

import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from edgegate.checks.base import (
    CheckContext,
    CheckResult,
    Interval,
    Status,
    Verdict,
    _jsonable,
    compare,
)
from edgegate.errors import DatasetError


def run(ctx: CheckContext) -> CheckResult:
    from edgegate.ppl import run_ppl

    t0 = time.perf_counter()
    if ctx.dense_path is None:
        return CheckResult.skipped("perplexity", "the perplexity check needs the dense model to compare against")
    sec = ctx.section
    runtime = str(ctx.options.get("ppl_runtime") or sec.get("runtime") or "auto")
    n_ctx = int(sec.get("n_ctx", 512))
    min_chunks = int(sec.get("min_chunks", 4))
    thr = float(sec.get("max_relative_increase", 0.05))
    text = None
    if sec.get("text"):
        p = Path(str(sec["text"]))
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read the perplexity text: {exc}", path=p, field="checks.perplexity.text") from exc
    models: tuple[str | Path, str | Path] = (ctx.dense_path, ctx.compressed_path)
    if ctx.options.get("dense_endpoint") and ctx.options.get("compressed_endpoint"):  # models on servers
        runtime = "openai"
        models = (str(ctx.options["dense_endpoint"]), str(ctx.options["compressed_endpoint"]))
    choice = None  # issue 12: `runtime: auto` -> where the compressed artifact ships (backends/auto.py)
    if runtime == "auto":
        from edgegate.backends.auto import resolve_pair

        choice = resolve_pair(ctx.dense_path, ctx.compressed_path)
        runtime = choice.runtime
    kwargs: dict[str, Any] = dict(
        runtime=runtime,
        text=text,
        n_ctx=n_ctx,
        mode=str(sec.get("mode", "chunked")),
        threads=ctx.options.get("threads"),
        cache_dir=ctx.options.get("cache_dir"),
        timeout=ctx.options.get("backend_timeout", 1800.0),  # None: in-process (tests, library use)
        progress=ctx.progress,
    )
    settings = {"runtime": runtime, "n_ctx": n_ctx, "min_chunks": min_chunks, "max_relative_increase": thr}
    shard = ctx.options.get("shard")  # (i, n) from --shard i/n: score only this shard's chunks
    if shard is not None:
        from edgegate.partial import ppl_shard

        payload = ppl_shard(*models, shard=shard, settings=settings, **kwargs)
        sink = ctx.options.get("partial_sink")
        if isinstance(sink, dict):
            sink["perplexity"] = payload
        return CheckResult.skipped(
            "perplexity", f"shard {shard[0]}/{shard[1]}: {len(payload['indices'])} of "
            f"{payload['chunking']['n_chunks']} chunks scored; the verdict comes from `edgegate merge`",
        )
    cmp = run_ppl(*models, **kwargs)
    res = result_from_comparison(cmp, settings, time.perf_counter() - t0)
    if choice is not None:  # the report names the runtime auto chose and why
        res = replace(res, measurements={**res.measurements, "runtime_choice": choice.as_dict()})
    return res


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
    if cmp.n < min_chunks:
        v = Verdict(
            "max_relative_increase", Status.INCONCLUSIVE,
            f"only {cmp.n} chunks of {n_ctx} tokens (< min_chunks {min_chunks}); use a longer text or smaller n_ctx",
            observed=cmp.relative_change, threshold=thr, comparator="<=", **extra,
        )
    else:
        v = compare("max_relative_increase", cmp.relative_change, "<=", thr, what=what, **extra)
    measurements = _jsonable(asdict(cmp))
    summary = f"PPL {d.ppl:.4g} -> {c.ppl:.4g} ({cmp.relative_change:+.2%}) on {runtime}"
    return CheckResult.from_verdicts("perplexity", [v], measurements, summary, duration_s)

"""Speed check: is the compressed model actually faster, per runtime?

Policy section ``speed``: runtimes, min_speedup (number or {runtime: number}), repetitions,
warmup, prompt_tokens, gen_tokens, threads. The metric is decode throughput (tokens/s,
compressed over dense); prefill and TTFT speedups are reported as measurements.

Decision rule: PASS only when the lower bound of the 95% bootstrap CI of the speedup is at
or above ``min_speedup`` (the speedup is demonstrated, not just observed); FAIL otherwise,
with the CI in the message. ``claims.speedup``: FAIL when the CI's upper bound is below the
claim (the measurement rules the claim out), else PASS. A runtime that is not installed, or
that cannot load the format given, is SKIPPED for that runtime only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from edgegate.checks.base import CheckContext, CheckResult, Interval, Status, Verdict, _jsonable
from edgegate.errors import BackendError, BackendUnavailable

_TEST = "ratio of medians, paired percentile bootstrap over interleaved (ABBA) repetitions"


def _min_speedup(section: Mapping[str, Any], runtime: str) -> float | None:
    raw = section.get("min_speedup", 1.0)
    if isinstance(raw, Mapping):
        v = raw.get(runtime)
        return None if v is None else float(v)
    return None if raw is None else float(raw)


def _trained_context(*paths: Any) -> int | None:
    """The smallest trained context of the given checkpoints (header/config only), or None."""
    from edgegate.checkpoint import open_checkpoint

    found: list[int] = []
    for p in paths:
        try:
            with open_checkpoint(p) as ck:
                v = (ck.config or {}).get("max_position_embeddings")
        except Exception:  # the backend reports unreadable models itself, with its own cause
            continue
        if isinstance(v, int) and v > 0:
            found.append(v)
    return min(found) if found else None


def fit_to_context(prompt_tokens: int, gen_tokens: int, trained: int | None) -> tuple[int, int, str | None]:
    """Shrink pp/tg so prompt + generated + 1 fits the trained context (keeping their ratio
    where the prompt alone would not fit), and say what was changed and why."""
    if trained is None or prompt_tokens + gen_tokens + 1 <= trained:
        return prompt_tokens, gen_tokens, None
    budget = trained - 1
    gen = min(gen_tokens, max(1, budget * gen_tokens // (prompt_tokens + gen_tokens)))
    prompt = budget - gen
    note = (
        f"pp{prompt_tokens}/tg{gen_tokens} does not fit the model's trained context of {trained} "
        f"tokens: measured pp{prompt}/tg{gen} instead"
    )
    return prompt, gen, note


def run(ctx: CheckContext) -> CheckResult:
    from edgegate.backends import RUNTIMES, available, supports
    from edgegate.perf.bench import BenchConfig, bench_runtime

    t0 = time.perf_counter()
    if ctx.dense_path is None:
        return CheckResult.skipped("speed", "the speed check needs the dense model to compare against")
    sec = ctx.section
    runtimes = list(ctx.options.get("runtimes") or sec.get("runtimes") or ["auto"])
    choice = None  # issue 12: `auto` in the list -> where the compressed artifact ships
    if "auto" in runtimes:
        from edgegate.backends.auto import resolve_pair

        choice = resolve_pair(ctx.dense_path, ctx.compressed_path)
        runtimes = list(dict.fromkeys(choice.runtime if r == "auto" else r for r in runtimes))
    threads = ctx.options.get("threads") or sec.get("threads")
    prompt_tokens, gen_tokens, ctx_note = fit_to_context(
        int(sec.get("prompt_tokens", 512)),
        int(sec.get("gen_tokens", 128)),
        _trained_context(ctx.dense_path, ctx.compressed_path),
    )
    cfg = BenchConfig(
        prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens,
        repetitions=int(sec.get("repetitions", 5)),
        warmup=int(sec.get("warmup", 1)),
        threads=int(threads) if threads else None,
        seed=int(ctx.options.get("seed") or 0),
        cache_dir=ctx.options.get("cache_dir"),
    )
    claim = ctx.claims.get("speedup")
    verdicts: list[Verdict] = []
    measurements: dict[str, Any] = {"context_note": ctx_note} if ctx_note else {}
    if choice is not None:
        measurements["runtime_choice"] = choice.as_dict()
    for rt in runtimes:
        why = supports(rt, ctx.dense_path) or supports(rt, ctx.compressed_path)
        if why is None and not available(rt):
            why = BackendUnavailable(rt, RUNTIMES[rt].extra).one_line()
        if why is not None:
            verdicts.append(Verdict("min_speedup", Status.SKIPPED, f"{rt}: skipped ({why})", scope=rt))
            continue
        try:
            res = bench_runtime(rt, ctx.dense_path, ctx.compressed_path, cfg, progress=ctx.progress)
        except BackendUnavailable as exc:
            verdicts.append(Verdict("min_speedup", Status.SKIPPED, f"{rt}: {exc.one_line()}", scope=rt))
            continue
        except BackendError as exc:
            verdicts.append(Verdict("min_speedup", Status.ERROR, f"{rt}: {exc.one_line()}", scope=rt))
            measurements[rt] = {"error": exc.to_dict()}
            continue
        measurements[rt] = _jsonable(asdict(res))
        sp = res.decode
        ci = Interval(sp.ci_low, sp.ci_high, sp.level, sp.method)
        common: dict[str, Any] = dict(
            observed=sp.point, unit="x", n=sp.n, ci=ci, effect_size=sp.point,
            effect_size_name="decode speedup (compressed/dense)", test=_TEST, scope=rt,
        )
        band = f"{sp.point:.3f}x [95% CI {sp.ci_low:.3f}, {sp.ci_high:.3f}], n={sp.n}"
        thr = _min_speedup(sec, rt)
        if thr is None:
            verdicts.append(Verdict("min_speedup", Status.SKIPPED, f"{rt}: no min_speedup set", **common))
        else:
            ok = sp.ci_low >= thr
            verdicts.append(Verdict(
                "min_speedup", Status.PASS if ok else Status.FAIL,
                f"{rt}: decode speedup {band} {'clears' if ok else 'does not demonstrate'} >= {thr:g}x"
                + ("" if ok else " (the CI lower bound must clear it)"),
                threshold=thr, comparator=">=", **common,
            ))
        if claim is not None:
            refuted = sp.ci_high < float(claim)
            verdicts.append(Verdict(
                "claimed_speedup", Status.FAIL if refuted else Status.PASS,
                f"{rt}: claimed {float(claim):g}x vs measured {band}: "
                + ("ruled out by the CI" if refuted else "consistent with the measurement"),
                threshold=float(claim), comparator="<=ci_high", **common,
            ))
    summary = "; ".join(v.message for v in verdicts if v.name == "min_speedup") or "no runtime measured"
    return CheckResult.from_verdicts("speed", verdicts, measurements, summary, time.perf_counter() - t0)

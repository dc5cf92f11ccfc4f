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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edgegate.checks.base import (
    THIS_RUN,
    CheckContext,
    CheckResult,
    Interval,
    Measured,
    Shard,
    Status,
    Verdict,
    jsonable,
)
from edgegate.errors import BackendError, BackendUnavailable

if TYPE_CHECKING:
    from edgegate.perf.bench import RuntimeBench

SHARDED = False  # timings of one machine: runs whole in shard 1 of a sharded run

_TEST = "ratio of medians, paired percentile bootstrap over interleaved (ABBA) repetitions"


def _min_speedup(section: Mapping[str, Any], runtime: str) -> float | None:
    raw = section.get("min_speedup", 1.0)
    if isinstance(raw, Mapping):
        v = raw.get(runtime)
        return None if v is None else float(v)
    return None if raw is None else float(raw)


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


@dataclass(frozen=True)
class SpeedMeasurement:
    """Per runtime: the benchmark, or why it was not measured (skipped/error verdict)."""

    benches: dict[str, RuntimeBench]
    not_measured: dict[str, Verdict]  # runtime -> skipped/error verdict
    errors: dict[str, dict[str, Any]]  # runtime -> error dict kept in the measurements
    runtimes: tuple[str, ...]
    claim: float | None
    context_note: str | None


def measure(ctx: CheckContext, shard: Shard | None = None) -> SpeedMeasurement | None:
    """Benchmark both models on every runtime asked for (None without a dense model)."""
    from edgegate.backends import RUNTIMES, available, supports
    from edgegate.backends.pair import trained_context
    from edgegate.perf.bench import BenchConfig, bench_runtime

    if ctx.dense_path is None:
        return None
    sec = ctx.section
    runtimes = list(ctx.settings.runtimes or sec.get("runtimes") or ["llamacpp", "mlx", "onnx"])
    threads = ctx.settings.threads or sec.get("threads")
    prompt_tokens, gen_tokens, ctx_note = fit_to_context(
        int(sec.get("prompt_tokens", 512)),
        int(sec.get("gen_tokens", 128)),
        trained_context(ctx.dense_path, ctx.compressed_path),
    )
    cfg = BenchConfig(
        prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens,
        repetitions=int(sec.get("repetitions", 5)),
        warmup=int(sec.get("warmup", 1)),
        threads=int(threads) if threads else None,
        seed=int(ctx.settings.seed or 0),
        cache_dir=ctx.settings.cache_dir,
    )
    benches: dict[str, RuntimeBench] = {}
    not_measured: dict[str, Verdict] = {}
    errors: dict[str, dict[str, Any]] = {}
    for rt in runtimes:
        why = supports(rt, ctx.dense_path) or supports(rt, ctx.compressed_path)
        if why is None and not available(rt):
            why = BackendUnavailable(rt, RUNTIMES[rt].extra).one_line()
        if why is not None:
            not_measured[rt] = Verdict("min_speedup", Status.SKIPPED, f"{rt}: skipped ({why})", scope=rt)
            continue
        try:
            benches[rt] = bench_runtime(rt, ctx.dense_path, ctx.compressed_path, cfg, progress=ctx.progress)
        except BackendUnavailable as exc:
            not_measured[rt] = Verdict("min_speedup", Status.SKIPPED, f"{rt}: {exc.one_line()}", scope=rt)
        except BackendError as exc:
            not_measured[rt] = Verdict("min_speedup", Status.ERROR, f"{rt}: {exc.one_line()}", scope=rt)
            errors[rt] = {"error": exc.to_dict()}
    return SpeedMeasurement(benches, not_measured, errors, tuple(runtimes), ctx.claims.get("speedup"), ctx_note)


def run(ctx: CheckContext) -> CheckResult:
    return judge([(THIS_RUN, measure(ctx))], ctx.section)


def judge(measurements: Sequence[Measured], section: Mapping[str, Any]) -> CheckResult:
    t0 = time.perf_counter()
    m: SpeedMeasurement | None = measurements[0][1]
    if m is None:
        return CheckResult.skipped("speed", "the speed check needs the dense model to compare against")
    claim = m.claim
    verdicts: list[Verdict] = []
    measurements_out: dict[str, Any] = {"context_note": m.context_note} if m.context_note else {}
    for rt in m.runtimes:
        if rt in m.not_measured:
            verdicts.append(m.not_measured[rt])
            if rt in m.errors:
                measurements_out[rt] = m.errors[rt]
            continue
        res = m.benches[rt]
        measurements_out[rt] = jsonable(asdict(res))
        sp = res.decode
        ci = Interval(sp.ci_low, sp.ci_high, sp.level, sp.method)
        common: dict[str, Any] = dict(
            observed=sp.point, unit="x", n=sp.n, ci=ci, effect_size=sp.point,
            effect_size_name="decode speedup (compressed/dense)", test=_TEST, scope=rt,
        )
        band = f"{sp.point:.3f}x [95% CI {sp.ci_low:.3f}, {sp.ci_high:.3f}], n={sp.n}"
        thr = _min_speedup(section, rt)
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
    return CheckResult.from_verdicts("speed", verdicts, measurements_out, summary, time.perf_counter() - t0)

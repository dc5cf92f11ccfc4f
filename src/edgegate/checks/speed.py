"""Speed check: is the compressed model actually faster, per runtime?

Policy section ``speed``: runtimes, min_speedup (number or {runtime: number}), min_effect,
repetitions, warmup, prompt_tokens, gen_tokens, threads. The metric is decode throughput
(tokens/s, compressed over dense); prefill and TTFT speedups are reported as measurements.

Decision rule, per runtime. The bar is ``min_speedup``; when it asks for a speedup at all
(>= 1) it is raised to at least ``1 + min_effect``, the smallest speedup worth the name (A/A
runs of a model against its own byte copy read up to a few percent either way).
- no mechanism (same format, same storage type and bytes for every tensor, dense kernels:
  ``edgegate.speed.mechanism``) and the bar asks for a speedup: FAIL, whatever the timing says;
- fewer than 2 repetitions: INCONCLUSIVE (no interval can be formed);
- else PASS when the lower bound of the 95% CI (paired t on per-repetition log ratios) is at
  or above the bar, FAIL when the upper bound is below it, INCONCLUSIVE in between; a PASS
  measured under contention with no mechanism read from the files (an endpoint) is
  INCONCLUSIVE (A/A runs under contention read up to +18%).
``claims.speedup`` above 1 with no mechanism is FAIL; otherwise FAIL when the CI's upper bound
is below the claim, else PASS. A timing taken under contention is marked in every message.
A runtime that is not installed, or cannot load the format given, is SKIPPED for that runtime.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgegate.checks._speed_verdicts import runtime_verdicts, speedup_bar, untimed_verdicts
from edgegate.checks.base import (
    CheckContext,
    CheckResult,
    Cost,
    Measured,
    Needs,
    RuntimeUse,
    Shard,
    Status,
    Verdict,
    jsonable,
)
from edgegate.checks.sections import SpeedSection
from edgegate.errors import BackendError, BackendUnavailable, ErrorEntry
from edgegate.speed.mechanism import Mechanism, speed_mechanism

if TYPE_CHECKING:
    from edgegate.backends.auto import RuntimeChoice
    from edgegate.speed.bench import BenchConfig, RuntimeBench

SHARDED = False  # timings of one machine: runs whole in shard 1 of a sharded run
SECTION = SpeedSection
NEEDS: Needs[SpeedSection] = Needs(local_files=True, runtime=RuntimeUse.SEVERAL, cost=Cost.TIMING)


def _min_speedup(section: SpeedSection, runtime: str) -> float | None:
    raw = section.min_speedup
    if isinstance(raw, Mapping):
        v = raw.get(runtime)
        return None if v is None else float(v)
    return None if raw is None else float(raw)


def fit_to_context(
    prompt_tokens: int, gen_tokens: int, trained: int | None
) -> tuple[int, int, str | None]:
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
    errors: dict[str, dict[str, ErrorEntry]]  # runtime -> {"error": ...}, kept in the measurements
    runtimes: tuple[str, ...]
    claim: float | None
    context_note: str | None
    runtime_choice: dict[str, str] | None = None  # `auto` in the list: the runtime chosen and why
    mechanisms: dict[str, Mechanism] = field(default_factory=dict)  # runtime -> could it be faster?
    untimed: tuple[str, ...] = ()  # runtimes whose verdicts the files decided: not timed


def measure(ctx: CheckContext[SpeedSection], shard: Shard | None = None) -> SpeedMeasurement | None:
    """Benchmark both models on every runtime asked for (None without a dense model)."""
    from edgegate.speed.bench import bench_runtime

    if ctx.dense_path is None:
        return None
    sec = ctx.section
    runtimes, choice = _runtimes(ctx, ctx.dense_path)
    cfg, ctx_note = _bench_config(ctx, ctx.dense_path)
    benches: dict[str, RuntimeBench] = {}
    not_measured: dict[str, Verdict] = {}
    errors: dict[str, dict[str, ErrorEntry]] = {}
    mechanisms: dict[str, Mechanism] = {}
    untimed: list[str] = []
    for rt in runtimes:
        why = _cannot_time(rt, ctx.dense_path, ctx.compressed_path)
        if why is None and not sec.time_when_decided:
            mech = speed_mechanism(ctx.dense_path, ctx.compressed_path, rt)
            if decided_by_files(
                mech,
                _min_speedup(ctx.section, rt),
                float(sec.min_effect),
                ctx.claims.get("speedup"),
            ):
                mechanisms[rt] = mech  # the timing could not change a verdict: not spent
                untimed.append(rt)
                continue
        if why is not None:
            not_measured[rt] = Verdict(
                "min_speedup", Status.SKIPPED, f"{rt}: skipped ({why})", scope=rt
            )
            continue
        try:
            mech = speed_mechanism(ctx.dense_path, ctx.compressed_path, rt)
            rule = _stopping_rule(rt, mech, ctx.section, ctx.claims.get("speedup"))
            benches[rt] = bench_runtime(
                rt, ctx.dense_path, ctx.compressed_path, cfg, progress=ctx.progress, decided=rule
            )
            mechanisms[rt] = mech
        except BackendUnavailable as exc:
            not_measured[rt] = Verdict(
                "min_speedup", Status.SKIPPED, f"{rt}: {exc.one_line()}", scope=rt
            )
        except BackendError as exc:
            not_measured[rt] = Verdict(
                "min_speedup", Status.ERROR, f"{rt}: {exc.one_line()}", scope=rt
            )
            errors[rt] = {"error": exc.to_dict()}
    return SpeedMeasurement(
        benches,
        not_measured,
        errors,
        tuple(runtimes),
        ctx.claims.get("speedup"),
        ctx_note,
        choice.as_dict() if choice else None,
        mechanisms,
        tuple(untimed),
    )


def _stopping_rule(
    rt: str, mech: Mechanism, sec: SpeedSection, claim: float | None
) -> Callable[[RuntimeBench], bool]:
    """Whether the timing so far decides every verdict of ``rt``: the judge's own rules on the
    interim interval (``edgegate.speed.sequential``), at least one verdict PASS or FAIL and none
    inconclusive. A claim passes at the end unless the interval falls below it, which a wider
    interval makes easier: at a look it counts as decided only when the interval clears it. A
    FAIL the files decide (no mechanism) is not the timing's decision: with
    ``time_when_decided`` the timing is judged on its own, as if the mechanism were unknown."""
    timing_mech = Mechanism(None, mech.reason) if mech.possible is False else mech
    thr, min_effect = _min_speedup(sec, rt), float(sec.min_effect)

    def decided(res: RuntimeBench) -> bool:
        verdicts = runtime_verdicts(rt, res, timing_mech, thr, min_effect, claim)
        claim_cleared = claim is not None and res.decode.ci_low >= float(claim)  # NaN: not
        for v in verdicts:
            if v.status in (Status.INCONCLUSIVE, Status.ERROR):
                return False
            if v.name == "claimed_speedup" and v.status is Status.PASS and not claim_cleared:
                return False
        return any(v.status in (Status.PASS, Status.FAIL) for v in verdicts)

    return decided


def _runtimes(
    ctx: CheckContext[SpeedSection], dense: Path
) -> tuple[list[str], RuntimeChoice | None]:
    """The runtimes to time, in order and each once (``--runtime`` over the policy's list), with
    ``auto`` replaced by where the compressed artifact ships, and that choice (None without
    ``auto``)."""
    runtimes = list(ctx.settings.runtimes or ctx.section.runtimes or ["auto"])
    if "auto" not in runtimes:
        return runtimes, None
    from edgegate.backends.auto import resolve_pair

    choice = resolve_pair(dense, ctx.compressed_path)
    return list(dict.fromkeys(choice.runtime if r == "auto" else r for r in runtimes)), choice


def _bench_config(ctx: CheckContext[SpeedSection], dense: Path) -> tuple[BenchConfig, str | None]:
    """The benchmark settings (``--threads``/``--seed`` over the policy), with pp/tg shrunk to
    the models' trained context, and the note saying so (None when they fit)."""
    from edgegate.backends.pair import trained_context
    from edgegate.speed.bench import BenchConfig

    sec = ctx.section
    threads = ctx.settings.threads or sec.threads
    prompt_tokens, gen_tokens, ctx_note = fit_to_context(
        int(sec.prompt_tokens),
        int(sec.gen_tokens),
        trained_context(dense, ctx.compressed_path),
    )
    cfg = BenchConfig(
        prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens,
        repetitions=int(sec.repetitions),
        sequential=bool(sec.sequential),
        warmup=int(sec.warmup),
        threads=int(threads) if threads else None,
        seed=int(ctx.settings.seed or 0),
        cache_dir=ctx.settings.cache_dir,
    )
    return cfg, ctx_note


def _cannot_time(rt: str, dense: Path, compressed: Path) -> str | None:
    """Why runtime ``rt`` cannot time this pair (a format it does not load, not installed), or
    None when it can."""
    from edgegate.backends import RUNTIMES, available, supports

    why = supports(rt, dense) or supports(rt, compressed)
    if why is None and not available(rt):
        why = BackendUnavailable(rt, RUNTIMES[rt].extra).one_line()
    return why


def decided_by_files(
    mech: Mechanism, thr: float | None, min_effect: float, claim: float | None
) -> bool:
    """True when every speed verdict of a runtime is FAIL whatever a timing would read: no
    mechanism for a speedup, and the bar and the claim (at least one of them set) ask for one."""
    if mech.possible is not False or (thr is None and claim is None):
        return False
    return (thr is None or speedup_bar(thr, min_effect) > 1.0) and (
        claim is None or float(claim) > 1.0
    )


def judge(measurements: Sequence[Measured], section: SpeedSection) -> CheckResult:
    t0 = time.perf_counter()
    m: SpeedMeasurement | None = measurements[0][1]
    if m is None:
        return CheckResult.skipped(
            "speed", "the speed check needs the dense model to compare against"
        )
    verdicts: list[Verdict] = []
    measurements_out: dict[str, Any] = {"context_note": m.context_note} if m.context_note else {}
    if m.runtime_choice:  # the report names the runtime auto chose and why
        measurements_out["runtime_choice"] = dict(m.runtime_choice)
    min_effect = float(section.min_effect)
    for rt in m.runtimes:
        if rt in m.not_measured:
            verdicts.append(m.not_measured[rt])
            if rt in m.errors:
                measurements_out[rt] = m.errors[rt]
            continue
        if rt in m.untimed:
            mech = m.mechanisms[rt]
            measurements_out[rt] = {
                "timed": False,
                "mechanism": mech.to_dict(),
                "why": "the files decide the verdict; speed.time_when_decided: true times it anyway",
            }
            verdicts.extend(
                untimed_verdicts(rt, mech, _min_speedup(section, rt), min_effect, m.claim)
            )
            continue
        res = m.benches[rt]
        mech = m.mechanisms.get(rt) or Mechanism(None, "not examined")
        out = jsonable(asdict(res))
        out["load"] = res.load.to_dict() if res.load is not None else None
        out["mechanism"] = mech.to_dict()
        measurements_out[rt] = out
        verdicts.extend(
            runtime_verdicts(rt, res, mech, _min_speedup(section, rt), min_effect, m.claim)
        )
    summary = (
        "; ".join(v.message for v in verdicts if v.name == "min_speedup") or "no runtime measured"
    )
    return CheckResult.from_verdicts(
        "speed", verdicts, measurements_out, summary, time.perf_counter() - t0
    )

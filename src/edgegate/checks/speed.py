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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from edgegate.checks.base import (
    CheckContext,
    CheckResult,
    Cost,
    Interval,
    Measured,
    Needs,
    ObservedEvidence,
    RuntimeUse,
    Shard,
    Status,
    Verdict,
    jsonable,
)
from edgegate.checks.sections import SpeedSection
from edgegate.errors import BackendError, BackendUnavailable
from edgegate.speed.mechanism import Mechanism, speed_mechanism

if TYPE_CHECKING:
    from edgegate.speed.bench import RuntimeBench

SHARDED = False  # timings of one machine: runs whole in shard 1 of a sharded run
SECTION = SpeedSection
NEEDS: Needs[SpeedSection] = Needs(local_files=True, runtime=RuntimeUse.SEVERAL, cost=Cost.TIMING)

_TEST = (
    "geometric mean of per-repetition speedups, paired t interval on log ratios (ABBA repetitions)"
)


def _min_speedup(section: SpeedSection, runtime: str) -> float | None:
    raw = section.min_speedup
    if isinstance(raw, Mapping):
        v = raw.get(runtime)
        return None if v is None else float(v)
    return None if raw is None else float(raw)


def speedup_bar(min_speedup: float, min_effect: float) -> float:
    """The lower CI bound a pass needs: a bar that asks for a speedup (>= 1) asks for one of
    at least ``1 + min_effect``; a non-inferiority bar (< 1, "at most this much slower") is
    kept as written."""
    return max(min_speedup, 1.0 + min_effect) if min_speedup >= 1.0 else min_speedup


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
    errors: dict[
        str, dict[str, dict[str, object]]
    ]  # runtime -> {"error": the error as JSON}, kept in the measurements
    runtimes: tuple[str, ...]
    claim: float | None
    context_note: str | None
    runtime_choice: dict[str, str] | None = None  # `auto` in the list: the runtime chosen and why
    mechanisms: dict[str, Mechanism] = field(default_factory=dict)  # runtime -> could it be faster?
    untimed: tuple[str, ...] = ()  # runtimes whose verdicts the files decided: not timed


def measure(ctx: CheckContext[SpeedSection], shard: Shard | None = None) -> SpeedMeasurement | None:
    """Benchmark both models on every runtime asked for (None without a dense model)."""
    from edgegate.backends import RUNTIMES, available, supports
    from edgegate.backends.pair import trained_context
    from edgegate.speed.bench import BenchConfig, bench_runtime

    if ctx.dense_path is None:
        return None
    sec = ctx.section
    runtimes = list(ctx.settings.runtimes or sec.runtimes or ["auto"])
    choice = None  # `auto` in the list -> where the compressed artifact ships
    if "auto" in runtimes:
        from edgegate.backends.auto import resolve_pair

        choice = resolve_pair(ctx.dense_path, ctx.compressed_path)
        runtimes = list(dict.fromkeys(choice.runtime if r == "auto" else r for r in runtimes))
    threads = ctx.settings.threads or sec.threads
    prompt_tokens, gen_tokens, ctx_note = fit_to_context(
        int(sec.prompt_tokens),
        int(sec.gen_tokens),
        trained_context(ctx.dense_path, ctx.compressed_path),
    )
    cfg = BenchConfig(
        prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens,
        repetitions=int(sec.repetitions),
        warmup=int(sec.warmup),
        threads=int(threads) if threads else None,
        seed=int(ctx.settings.seed or 0),
        cache_dir=ctx.settings.cache_dir,
    )
    benches: dict[str, RuntimeBench] = {}
    not_measured: dict[str, Verdict] = {}
    errors: dict[str, dict[str, dict[str, object]]] = {}
    mechanisms: dict[str, Mechanism] = {}
    untimed: list[str] = []
    for rt in runtimes:
        why = supports(rt, ctx.dense_path) or supports(rt, ctx.compressed_path)
        if why is None and not available(rt):
            why = BackendUnavailable(rt, RUNTIMES[rt].extra).one_line()
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
            benches[rt] = bench_runtime(
                rt, ctx.dense_path, ctx.compressed_path, cfg, progress=ctx.progress
            )
            mechanisms[rt] = speed_mechanism(ctx.dense_path, ctx.compressed_path, rt)
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
                _untimed_verdicts(rt, mech, _min_speedup(section, rt), min_effect, m.claim)
            )
            continue
        res = m.benches[rt]
        mech = m.mechanisms.get(rt) or Mechanism(None, "not examined")
        out = jsonable(asdict(res))
        out["load"] = res.load.to_dict() if res.load is not None else None
        out["mechanism"] = mech.to_dict()
        measurements_out[rt] = out
        verdicts.extend(
            _runtime_verdicts(rt, res, mech, _min_speedup(section, rt), min_effect, m.claim)
        )
    summary = (
        "; ".join(v.message for v in verdicts if v.name == "min_speedup") or "no runtime measured"
    )
    return CheckResult.from_verdicts(
        "speed", verdicts, measurements_out, summary, time.perf_counter() - t0
    )


def _untimed_verdicts(
    rt: str, mech: Mechanism, thr: float | None, min_effect: float, claim: float | None
) -> list[Verdict]:
    """The verdicts the files decide (decided_by_files): evidence is the census of the tensor
    headers, not a sample, so its interval is the value itself."""
    share = mech.differing / mech.tensors if mech.tensors else 0.0
    common = ObservedEvidence(
        observed=float(mech.differing),
        unit="tensors stored with another type or size",
        n=mech.tensors,
        ci=Interval(
            float(mech.differing),
            float(mech.differing),
            1.0,
            "census of every tensor pair (no sampling)",
        ),
        effect_size=share,
        effect_size_name="share of tensors stored differently",
        test="tensor headers compared (storage type and bytes of every tensor pair); not timed: a timing cannot "
        "change this verdict",
        scope=rt,
    )
    out = []
    if thr is not None:
        bar = speedup_bar(thr, min_effect)
        out.append(
            Verdict(
                "min_speedup",
                Status.FAIL,
                f"{rt}: {mech.reason}; >= {bar:g}x cannot hold (not timed: "
                "speed.time_when_decided: true times it anyway)",
                threshold=bar,
                comparator=">=",
                **common,
            )
        )
    if claim is not None:
        out.append(
            Verdict(
                "claimed_speedup",
                Status.FAIL,
                f"{rt}: claimed {float(claim):g}x: {mech.reason} (not timed)",
                threshold=float(claim),
                comparator="<=ci_high",
                **common,
            )
        )
    return out


def _runtime_verdicts(
    rt: str,
    res: RuntimeBench,
    mech: Mechanism,
    thr: float | None,
    min_effect: float,
    claim: float | None,
) -> list[Verdict]:
    sp = res.decode
    ci = Interval(sp.ci_low, sp.ci_high, sp.level, sp.method) if sp.n >= 2 else None
    common = ObservedEvidence(
        observed=sp.point,
        unit="x",
        n=sp.n,
        ci=ci,
        effect_size=sp.point,
        effect_size_name="decode speedup (compressed/dense)",
        test=_TEST,
        scope=rt,
    )
    band = (
        f"{sp.point:.3f}x [95% CI {sp.ci_low:.3f}, {sp.ci_high:.3f}], n={sp.n}"
        if ci is not None
        else f"{sp.point:.3f}x, n={sp.n} (no interval)"
    )
    contended = res.load is not None and res.load.contended is True
    if res.load is not None and contended:
        band += f"; measured under contention ({res.load.describe()})"
    no_mechanism = mech.possible is False
    verdicts: list[Verdict] = []
    if thr is None:
        verdicts.append(
            Verdict("min_speedup", Status.SKIPPED, f"{rt}: no min_speedup set", **common)
        )
    else:
        bar = speedup_bar(thr, min_effect)
        asked = f">= {bar:g}x" + (
            f" (min_speedup {thr:g}, min_effect {min_effect:g})" if bar != thr else ""
        )
        if no_mechanism and bar > 1.0:
            status, text = (
                Status.FAIL,
                f"{mech.reason}; the timing ({band}) is not counted as a speedup",
            )
        elif ci is None:
            status, text = (
                Status.INCONCLUSIVE,
                f"decode speedup {band}: too few repetitions to judge {asked}",
            )
        elif sp.ci_low >= bar and contended and mech.possible is None:
            # under contention A/A runs read up to +18% with tight intervals (docs/calibration):
            # without a mechanism read from the files, timing alone cannot carry a pass there
            status, text = (
                Status.INCONCLUSIVE,
                (
                    f"decode speedup {band} clears {asked}, but under contention "
                    "and with no mechanism read from the files; re-run on an idle machine"
                ),
            )
        elif sp.ci_low >= bar:
            status, text = Status.PASS, f"decode speedup {band} clears {asked}"
        elif sp.ci_high < bar:
            status, text = Status.FAIL, f"decode speedup {band} rules out {asked}"
        else:
            status, text = (
                Status.INCONCLUSIVE,
                (
                    f"decode speedup {band} neither demonstrates nor rules out "
                    f"{asked} (more repetitions narrow the CI)"
                ),
            )
        verdicts.append(
            Verdict(
                "min_speedup", status, f"{rt}: {text}", threshold=bar, comparator=">=", **common
            )
        )
    if claim is not None:
        c = float(claim)
        if no_mechanism and c > 1.0:
            status, text = Status.FAIL, f"claimed {c:g}x: {mech.reason} (timing {band})"
        elif ci is not None and sp.ci_high < c:
            status, text = Status.FAIL, f"claimed {c:g}x vs measured {band}: ruled out by the CI"
        elif ci is None:
            status, text = (
                Status.INCONCLUSIVE,
                f"claimed {c:g}x vs measured {band}: too few repetitions",
            )
        else:
            status, text = (
                Status.PASS,
                f"claimed {c:g}x vs measured {band}: consistent with the measurement",
            )
        verdicts.append(
            Verdict(
                "claimed_speedup",
                status,
                f"{rt}: {text}",
                threshold=c,
                comparator="<=ci_high",
                **common,
            )
        )
    return verdicts

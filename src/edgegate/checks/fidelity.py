"""Fidelity check: does the compressed model still predict what the dense one predicts?

Perplexity averages one model's surprise; two models can share it and still disagree on many
tokens. This check compares the two next-token distributions themselves, token by token, on
the perplexity text (``edgegate.fidelity``): KL(dense || compressed) over the whole vocabulary,
top-1 agreement and each model's probability of the token that follows.

Policy section ``fidelity``: max_mean_kl, min_top1_agreement, min_chunks, bootstrap_resamples,
seed; runtime, n_ctx, text and mode are the perplexity block's unless set here, so one scoring
pass serves both checks (``checks._scoring``): both models on one runtime, their tokenizers
proven identical on the text first (``ppl.same_tokenizer``), as for perplexity.

Decision rule, on the 95% CI of a paired bootstrap over chunks (n = chunks):
- mean KL: PASS when the CI's upper bound is at most ``max_mean_kl``, FAIL when its lower bound
  is above it, else INCONCLUSIVE (this much text cannot tell: score more);
- top-1 agreement: PASS when the lower bound is at least ``min_top1_agreement``, FAIL when the
  upper bound is below it, else INCONCLUSIVE;
- fewer than ``min_chunks`` chunks: INCONCLUSIVE. Models behind a server (no full
  distributions) are SKIPPED with the reason, never passed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypedDict

from edgegate.checks._scoring import text_inputs
from edgegate.checks.base import (
    CheckContext,
    CheckResult,
    Cost,
    Interval,
    Measured,
    Needs,
    RuntimeUse,
    Shard,
    Status,
    Verdict,
    VerdictDetail,
)
from edgegate.checks.sections import FidelitySection
from edgegate.errors import InputError
from edgegate.partial import differ, first_difference

SHARDED = True  # chunk k is scored by shard k % n + 1, as for perplexity
# its block carries the perplexity text unless it names its own
NEEDS = Needs(
    runtime=RuntimeUse.ONE,
    data=text_inputs("fidelity"),
    shares_data_of="perplexity",
    cost=Cost.PASS,
)
NAME = "fidelity"
SECTION = FidelitySection


class Settings(TypedDict):
    """The section's thresholds and the pass's settings, as each shard records them."""

    runtime: str
    n_ctx: int
    mode: str
    min_chunks: int
    max_mean_kl: float
    min_top1_agreement: float
    bootstrap_resamples: int
    seed: int


def measure(
    ctx: CheckContext[FidelitySection], shard: Shard | None = None
) -> dict[str, Any] | None:
    """This shard's per-token KL, top-1 agreement and NLLs of both models; None without a
    dense model. The pass is left in ``ctx.shared`` for the perplexity check."""
    from edgegate.checks import _scoring

    t0 = time.perf_counter()
    sec = ctx.section
    s = _scoring.setup(ctx, NAME)
    if s is None:
        return None
    settings = Settings(
        runtime=s.runtime,
        n_ctx=s.n_ctx,
        mode=s.mode,
        min_chunks=int(sec.min_chunks),
        max_mean_kl=float(sec.max_mean_kl),
        min_top1_agreement=float(sec.min_top1_agreement),
        bootstrap_resamples=int(sec.bootstrap_resamples),
        seed=int(sec.seed),
    )
    if s.runtime == "openai":
        return {
            "settings": settings,
            "skipped": (
                "models behind a server give at most their top log-probabilities per position, not the "
                "full next-token distributions KL compares: run the fidelity check on the model files"
            ),
        }
    m = _scoring.run_pass(ctx, s, shard, fidelity=True)
    return {"settings": settings, **m, "duration_s": time.perf_counter() - t0}


def judge(measurements: Sequence[Measured], section: FidelitySection) -> CheckResult:
    """The verdicts from every shard's per-token records (the thresholds each shard recorded:
    a merge has checked that they agree with each other and with the policy)."""
    from edgegate.fidelity import result_dict, summarize

    first_name, first = measurements[0]
    if first is None:
        return CheckResult.skipped(
            NAME, "the fidelity check needs the dense model to compare against"
        )
    if first.get("skipped"):
        return CheckResult.skipped(NAME, str(first["skipped"]))
    for pname, p in measurements[1:]:
        for key in ("settings", "chunking"):
            if first_difference(first[key], p[key]):
                raise differ(first_name, pname, f"checks.{NAME}.{key}", first[key], p[key])
    owner: dict[int, str] = {}
    rows: dict[str, dict[int, list[float]]] = {"kl": {}, "top1": {}, "dense": {}, "compressed": {}}
    for pname, p in measurements:
        for j, k in enumerate(p["indices"]):
            if k in owner:
                raise InputError(
                    f"cannot merge: fidelity chunk {k} is in both {owner[k]} and {pname} (overlapping shards)",
                    field=f"checks.{NAME}.indices",
                )
            owner[k] = pname
            rows["kl"][k], rows["top1"][k] = p["fidelity"]["kl"][j], p["fidelity"]["top1"][j]
            rows["dense"][k], rows["compressed"][k] = (
                p["nll"]["dense"][j],
                p["nll"]["compressed"][j],
            )
    n_chunks = int(first["chunking"]["n_chunks"])
    missing = [k for k in range(n_chunks) if k not in owner]
    if missing:
        raise InputError(
            f"cannot merge: fidelity chunk(s) {missing[:5]} scored by no shard",
            field=f"checks.{NAME}.indices",
        )
    st: Settings = first["settings"]
    order = range(n_chunks)
    res = summarize(
        [rows["kl"][k] for k in order],
        [rows["top1"][k] for k in order],
        [rows["dense"][k] for k in order],
        [rows["compressed"][k] for k in order],
        resamples=int(st["bootstrap_resamples"]),
        seed=int(st["seed"]),
    )
    verdicts = [_kl_verdict(res, st), _top1_verdict(res, st)]
    extra = {k: v for k, v in first["extra"].items() if not k.endswith("_ident")}
    measured: dict[str, Any] = {
        **result_dict(res),
        "runtime": st["runtime"],
        "n_ctx": st["n_ctx"],
        "mode": st["mode"],
        "same_runtime": f"both models on {st['runtime']}; tokenizers identical on the text (checked first)",
        "seconds": {
            role: sum(float(p["seconds"][role]) for _, p in measurements)
            for role in ("dense", "compressed")
        }
        | {"compare": sum(float(p["fidelity"]["compare_s"]) for _, p in measurements)},
        **extra,
    }
    if first.get("runtime_choice"):
        measured["runtime_choice"] = dict(first["runtime_choice"])
    summary = (
        f"mean KL {res.mean_kl.value:.4g} nats/token [{res.mean_kl.ci_low:.4g}, {res.mean_kl.ci_high:.4g}], "
        f"top-1 agreement {res.top1_agreement.value:.2%} [{res.top1_agreement.ci_low:.2%}, "
        f"{res.top1_agreement.ci_high:.2%}] over {res.n_chunks} chunks ({res.n_tokens} tokens) on {st['runtime']}"
    )
    return CheckResult.from_verdicts(
        NAME, verdicts, measured, summary, sum(float(p["duration_s"]) for _, p in measurements)
    )


def _kl_verdict(res: Any, st: Settings) -> Verdict:
    e, thr = res.mean_kl, float(st["max_mean_kl"])
    return _on_ci(
        "max_mean_kl",
        e,
        thr,
        "<=",
        res,
        st,
        f"mean KL(dense || compressed) {e.value:.4g} nats/token, 95% CI [{e.ci_low:.4g}, {e.ci_high:.4g}]",
        "mean KL(dense || compressed), nats per token",
    )


def _top1_verdict(res: Any, st: Settings) -> Verdict:
    e, thr = res.top1_agreement, float(st["min_top1_agreement"])
    return _on_ci(
        "min_top1_agreement",
        e,
        thr,
        ">=",
        res,
        st,
        f"top-1 agreement {e.value:.2%}, 95% CI [{e.ci_low:.2%}, {e.ci_high:.2%}]",
        "share of tokens with the same most likely next token",
    )


def _on_ci(
    name: str, e: Any, thr: float, comparator: str, res: Any, st: Settings, what: str, effect: str
) -> Verdict:
    """PASS when the whole CI is on the right side of ``thr``, FAIL when it is wholly on the
    wrong side, else INCONCLUSIVE; too few chunks is INCONCLUSIVE whatever the CI says."""
    kw = VerdictDetail(
        observed=e.value,
        threshold=thr,
        comparator=comparator,
        n=res.n_chunks,
        ci=Interval(e.ci_low, e.ci_high, res.level, res.test),
        effect_size=e.value,
        effect_size_name=effect,
        test=res.test,
        scope=str(st["runtime"]),
    )
    min_chunks = int(st["min_chunks"])
    if res.n_chunks < min_chunks:
        return Verdict(
            name,
            Status.INCONCLUSIVE,
            f"{what}: only {res.n_chunks} chunks of {st['n_ctx']} tokens (< min_chunks {min_chunks}); "
            "use a longer text or a smaller n_ctx",
            **kw,
        )
    good, bad = (
        (e.ci_high <= thr, e.ci_low > thr)
        if comparator == "<="
        else (e.ci_low >= thr, e.ci_high < thr)
    )
    shown = f"{thr:.2%}" if comparator == ">=" else f"{thr:.4g}"
    if good:
        return Verdict(
            name, Status.PASS, f"{what} within {comparator} {shown} (the whole CI)", **kw
        )
    if bad:
        return Verdict(
            name, Status.FAIL, f"{what} violates {comparator} {shown} (the whole CI)", **kw
        )
    return Verdict(
        name,
        Status.INCONCLUSIVE,
        f"{what}: the CI straddles {shown}; this text cannot tell (score a longer one)",
        **kw,
    )

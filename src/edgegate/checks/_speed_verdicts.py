"""The speed check's verdicts on one runtime, from its timing (``runtime_verdicts``) or, when
the files decide them, from the tensor headers alone (``untimed_verdicts``). The decision rule
is in ``edgegate.checks.speed``'s docstring; the check module measures, this one judges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgegate.checks.base import Interval, ObservedEvidence, Status, Verdict

if TYPE_CHECKING:
    from edgegate.speed.bench import RuntimeBench, Speedup
    from edgegate.speed.mechanism import Mechanism

TEST = (
    "geometric mean of per-repetition speedups, paired t interval on log ratios (ABBA repetitions)"
)


def speedup_bar(min_speedup: float, min_effect: float) -> float:
    """The lower CI bound a pass needs: a bar that asks for a speedup (>= 1) asks for one of
    at least ``1 + min_effect``; a non-inferiority bar (< 1, "at most this much slower") is
    kept as written."""
    return max(min_speedup, 1.0 + min_effect) if min_speedup >= 1.0 else min_speedup


def untimed_verdicts(
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


def runtime_verdicts(
    rt: str,
    res: RuntimeBench,
    mech: Mechanism,
    thr: float | None,
    min_effect: float,
    claim: float | None,
) -> list[Verdict]:
    """The min_speedup and claimed_speedup verdicts on a timed runtime, on its decode speedup
    (the interval needs 2 repetitions; a timing under contention says so in every message)."""
    sp = res.decode
    ci = Interval(sp.ci_low, sp.ci_high, sp.level, sp.method) if sp.n >= 2 else None
    common = ObservedEvidence(
        observed=sp.point,
        unit="x",
        n=sp.n,
        ci=ci,
        effect_size=sp.point,
        effect_size_name="decode speedup (compressed/dense)",
        test=TEST,
        scope=rt,
    )
    band = (
        f"{sp.point:.3f}x [{_level(sp.level)} CI {sp.ci_low:.3f}, {sp.ci_high:.3f}], n={sp.n}"
        if ci is not None
        else f"{sp.point:.3f}x, n={sp.n} (no interval)"
    )
    seq = res.sequential
    if seq is not None and seq.stopped_early:
        band += (
            f"; stopped at look {len(seq.looks)} of {len(seq.looks_planned) + 1} "
            f"({seq.repetitions_run} of {seq.planned_repetitions} repetitions)"
        )
    contended = res.load is not None and res.load.contended is True
    if res.load is not None and contended:
        band += f"; measured under contention ({res.load.describe()})"
    verdicts: list[Verdict] = []
    if thr is None:
        verdicts.append(
            Verdict("min_speedup", Status.SKIPPED, f"{rt}: no min_speedup set", **common)
        )
    else:
        bar = speedup_bar(thr, min_effect)
        status, text = _min_speedup_outcome(sp, bar, thr, min_effect, band, contended, mech)
        verdicts.append(
            Verdict(
                "min_speedup", status, f"{rt}: {text}", threshold=bar, comparator=">=", **common
            )
        )
    if claim is not None:
        status, text = _claim_outcome(sp, float(claim), band, mech)
        verdicts.append(
            Verdict(
                "claimed_speedup",
                status,
                f"{rt}: {text}",
                threshold=float(claim),
                comparator="<=ci_high",
                **common,
            )
        )
    return verdicts


def _level(level: float) -> str:
    """95% for the fixed-n interval; an interim look's stricter level with its digits."""
    return f"{level * 100:.4g}%"


def _min_speedup_outcome(
    sp: Speedup,
    bar: float,
    thr: float,
    min_effect: float,
    band: str,
    contended: bool,
    mech: Mechanism,
) -> tuple[Status, str]:
    """The min_speedup verdict on a timed runtime, and why: the decode speedup's CI against
    ``bar`` (``speedup_bar`` of ``thr``), unless the files show no mechanism for a speedup."""
    asked = f">= {bar:g}x" + (
        f" (min_speedup {thr:g}, min_effect {min_effect:g})" if bar != thr else ""
    )
    if mech.possible is False and bar > 1.0:
        return Status.FAIL, f"{mech.reason}; the timing ({band}) is not counted as a speedup"
    if sp.n < 2:
        return (
            Status.INCONCLUSIVE,
            f"decode speedup {band}: too few repetitions to judge {asked}",
        )
    if sp.ci_low >= bar and contended and mech.possible is None:
        # under contention A/A runs read up to +18% with tight intervals (docs/calibration):
        # without a mechanism read from the files, timing alone cannot carry a pass there
        return (
            Status.INCONCLUSIVE,
            f"decode speedup {band} clears {asked}, but under contention "
            "and with no mechanism read from the files; re-run on an idle machine",
        )
    if sp.ci_low >= bar:
        return Status.PASS, f"decode speedup {band} clears {asked}"
    if sp.ci_high < bar:
        return Status.FAIL, f"decode speedup {band} rules out {asked}"
    return (
        Status.INCONCLUSIVE,
        f"decode speedup {band} neither demonstrates nor rules out "
        f"{asked} (more repetitions narrow the CI)",
    )


def _claim_outcome(sp: Speedup, c: float, band: str, mech: Mechanism) -> tuple[Status, str]:
    """The claimed_speedup verdict on a timed runtime, and why: a claim is refuted only when
    the CI's upper bound is below it (or the files show no mechanism for a speedup)."""
    if mech.possible is False and c > 1.0:
        return Status.FAIL, f"claimed {c:g}x: {mech.reason} (timing {band})"
    if sp.n >= 2 and sp.ci_high < c:
        return Status.FAIL, f"claimed {c:g}x vs measured {band}: ruled out by the CI"
    if sp.n < 2:
        return Status.INCONCLUSIVE, f"claimed {c:g}x vs measured {band}: too few repetitions"
    return Status.PASS, f"claimed {c:g}x vs measured {band}: consistent with the measurement"

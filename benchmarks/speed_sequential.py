"""Sequential speed timing vs the fixed-n design: error rates and repetitions saved, simulated.

Per repetition the speed check sees one log ratio (compressed over dense decode throughput).
The calibration rows (studies/results/calibration/speed.jsonl, the current process design)
keep each run's SD of those log ratios, not the ratios themselves, so the noise is drawn
around them: per draw, ``repetitions`` log ratios = log(true speedup) + an ABBA order effect
(+d in the repetitions that start the dense model first, -d in the others; whole pairs cancel
it) + sigma * e, with e normal or Student t with 3 degrees of freedom scaled to unit variance
(heavy tails: one slow process in a run). sigma: the median log-ratio SD of the stored strict
A/A runs idle, of the positives, and of the A/A runs under load.

Each draw is judged twice: the fixed-n rule (paired t interval at 95% over all repetitions:
PASS when its lower bound clears the bar, FAIL when its upper bound is below it), and the
sequential rule (``edgegate.speed.sequential``: at each interim look the interval at the look's
level; stop on PASS or FAIL; else the fixed-n rule at the end). The vectorised rule is checked
against the check's own code (``checks.speed._stopping_rule`` and ``checks.speed.judge``) on
the first ``--check`` draws of every row; any disagreement aborts.

    python benchmarks/speed_sequential.py [--draws 20000] [--out docs/speed-sequential.md]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgegate.checks import speed  # noqa: E402
from edgegate.checks._speed_verdicts import speedup_bar  # noqa: E402
from edgegate.results import Status  # noqa: E402
from edgegate.speed import sequential as seq  # noqa: E402
from edgegate.speed.bench import PROCESS_DESIGN, BenchConfig, Sample, summarize  # noqa: E402
from edgegate.speed.load import MachineLoad  # noqa: E402
from edgegate.speed.mechanism import Mechanism  # noqa: E402

CALIBRATION = ROOT / "studies" / "results" / "calibration" / "speed.jsonl"
SPEEDUPS = (1.0, 1.10, 1.15, 1.20, 1.30, 1.50)
ORDER_EFFECT = 0.03  # the timed-second model read ~3% faster (docs/calibration/speed.md)
MECH = Mechanism(True, "simulated: storage differs")
QUIET = MachineLoad(1.0, 0.0, 0.0, 0.0, 0.0, 2)
PASS, FAIL, INC = 1, -1, 0


def stored_sigmas() -> dict[str, float]:
    rows = [json.loads(line) for line in CALIBRATION.read_text("utf-8").splitlines() if line]
    rows = [r for r in rows if r.get("design") == PROCESS_DESIGN and "strict" in r["plan"]]

    def median(plan: str, conditions: tuple[str, ...]) -> tuple[float, int]:
        sds = [r["log_sd"] for r in rows if r["plan"] == plan and r["condition"] in conditions]
        return float(np.median(sds)), len(sds)

    out = {}
    for label, plan, cond in (
        ("positives, idle", "pos-strict", ("as-found",)),
        ("A/A, idle", "aa-strict", ("as-found",)),
        ("A/A, busy loop beside it", "aa-strict", ("load",)),
    ):
        sd, n = median(plan, cond)
        out[f"{label} (median of {n} runs)"] = sd
    return out


def draw(rng: np.random.Generator, n: int, reps: int, sigma: float, tails: str) -> np.ndarray:
    e = rng.standard_normal((n, reps))
    if tails == "t3":
        e = rng.standard_t(3, (n, reps)) / math.sqrt(3.0)  # unit variance
    order = np.where(np.arange(reps) % 2 == 0, ORDER_EFFECT / 2, -ORDER_EFFECT / 2)
    return sigma * e + order


def verdicts(logs: np.ndarray, level: float, bar: float) -> np.ndarray:
    """The judge's min_speedup rule on each row of log ratios: PASS/FAIL/INC as 1/-1/0."""
    n = logs.shape[1]
    mean = logs.mean(axis=1)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * logs.std(axis=1, ddof=1) / math.sqrt(n)
    lo, hi = np.exp(mean - half), np.exp(mean + half)
    return np.where(lo >= bar, PASS, np.where(hi < bar, FAIL, INC))


def judged(logs: np.ndarray, looks: tuple[seq.LookPlan, ...], bar: float) -> tuple[np.ndarray, ...]:
    """(fixed-n verdicts, sequential verdicts, repetitions used) per row."""
    fixed = verdicts(logs, 0.95, bar)
    out = np.zeros(len(logs), dtype=np.int64)
    used = np.full(len(logs), logs.shape[1])
    open_ = np.ones(len(logs), dtype=bool)
    for lp in looks:
        v = verdicts(logs[:, : lp.repetitions], lp.level, bar)
        stop = open_ & (v != INC)
        out[stop], used[stop] = v[stop], lp.repetitions
        open_ &= ~stop
    out[open_] = fixed[open_]
    return fixed, out, used


def _bench(ratios: np.ndarray, level: float) -> object:
    samples = []
    for i, r in enumerate(np.exp(ratios)):
        for model, tps in (("dense", 40.0), ("compressed", 40.0 * float(r))):
            samples.append(Sample(model, i, len(samples), 0.1, 128 / tps, 0.2, 1.0, tps, None))
    cfg = BenchConfig(repetitions=len(ratios), sequential=True)
    return summarize(
        "llamacpp", cfg, samples, {"dense": {}, "compressed": {}}, None, 1.0, QUIET, level=level
    )


def crosscheck(logs: np.ndarray, looks: tuple[seq.LookPlan, ...], got: np.ndarray) -> None:
    """The check's own code on the same draws must reach the same sequential verdicts."""
    section = speed.SECTION.from_policy({"min_speedup": 1.0})
    rule = speed._stopping_rule("llamacpp", MECH, section, None)
    names = {Status.PASS: PASS, Status.FAIL: FAIL, Status.INCONCLUSIVE: INC}
    for row, want in zip(logs, got, strict=True):
        outcome = None
        for lp in looks:
            bench = _bench(row[: lp.repetitions], lp.level)
            if rule(bench):  # type: ignore[arg-type]
                outcome = bench
                break
        bench = outcome or _bench(row, 0.95)
        m = speed.SpeedMeasurement(
            {"llamacpp": bench},
            {},
            {},
            ("llamacpp",),
            None,
            None,
            None,
            {"llamacpp": MECH},  # type: ignore[dict-item]
        )
        (v,) = speed.judge([("sim", m)], section).verdicts
        if names[v.status] != want:
            raise SystemExit(f"the vectorised rule disagrees with the check's code on {row}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--repetitions", type=int, default=6)
    ap.add_argument(
        "--check", type=int, default=200, help="draws per row checked against the check's code"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    bar = speedup_bar(1.0, 0.15)
    looks = seq.plan(args.repetitions, 0.95)
    rng = np.random.default_rng(args.seed)
    lines = [
        "# Sequential speed timing vs fixed n (simulated)",
        "",
        f"`python benchmarks/speed_sequential.py --draws {args.draws} --repetitions {args.repetitions}`: "
        f"strict's bar ({bar:g}x: min_speedup 1.0 raised by min_effect 0.15), {args.repetitions} repetitions, "
        + ", ".join(f"a look after {lp.repetitions} at level {lp.level:.4f}" for lp in looks)
        + f"; ABBA order effect ±{ORDER_EFFECT / 2:g} in log; {args.draws:,} draws per row; the first "
        f"{args.check} of each row re-judged by the check's own code (agreed in all).",
        "",
        "| noise SD of the log ratios | tails | true speedup | fixed n: PASS | FAIL | sequential: PASS | FAIL "
        "| Δ PASS | Δ FAIL | stopped early | mean repetitions |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for label, sigma in stored_sigmas().items():
        for tails in ("normal", "t3"):
            for s in SPEEDUPS:
                logs = math.log(s) + draw(rng, args.draws, args.repetitions, sigma, tails)
                fixed, got, used = judged(logs, looks, bar)
                crosscheck(logs[: args.check], looks, got[: args.check])
                fp, ff = float(np.mean(fixed == PASS)), float(np.mean(fixed == FAIL))
                sp, sf = float(np.mean(got == PASS)), float(np.mean(got == FAIL))
                # wrong: a PASS when the truth is at or below the bar, a FAIL when at or above it
                if s <= bar:
                    worst = max(worst, sp - fp)
                if s >= bar:
                    worst = max(worst, sf - ff)
                lines.append(
                    f"| {sigma:.3f} {label} | {tails} | {s:g} | {fp:.4f} | {ff:.4f} | {sp:.4f} | {sf:.4f} "
                    f"| {sp - fp:+.4f} | {sf - ff:+.4f} | {np.mean(used < args.repetitions):.3f} | {used.mean():.2f} |"
                )
                print(lines[-1], flush=True)
    spent_half = sum(1 - lp.level for lp in looks) / 2
    lines += [
        "",
        f"A PASS is wrong when the true speedup is at or below the bar, a FAIL when it is at or above it. Bound: an "
        f"interim stop needs the whole interval at the look's level on one side of the bar, so each wrong decision "
        f"rises by at most half the interim alpha spent, {spent_half:.4f}. Largest rise of a wrong decision in the "
        f"table: {worst:+.4f}. Done in {time.perf_counter() - t0:.0f} s.",
    ]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text, "utf-8")
    print(lines[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Stop timing once every speed verdict of a runtime is decided (group-sequential, both sides).

Repetitions run in ABBA pairs (dense started first, then compressed first), so only an even
count cancels start- and run-order effects. With ``speed.sequential`` the check looks at the
timings after every pair from the 4th repetition on, before the last: the first interval worth
looking at (3 degrees of freedom; at 2 repetitions an interim t quantile is in the hundreds).
At a look after n of N repetitions the decode speedup's paired t interval is formed at two-sided
level ``1 - a``, where ``a`` is that look's increment of the Lan-DeMets O'Brien-Fleming-type
spending function (``edgegate.stats.obf_spent``) of ``1 - level`` at information fraction n / N.
The run stops when the judge's own rules (``checks._speed_verdicts.runtime_verdicts``) read on
that wider interval leave no verdict inconclusive: every one PASS or FAIL. The last look is the
fixed-n rule, unchanged. What a reviewer can check:

- a run that does not stop early is judged exactly as a fixed-n run, so the chance of either
  decision at the end is never lower than fixed-n's: power is kept by construction;
- the chance of a wrong PASS (or a wrong FAIL) rises by at most half the interim alpha spent:
  an interim stop needs the whole wider interval on one side of the bar. Strict's 6
  repetitions have one look, at 4, at level 0.984: at most +0.008 per side on top of the
  fixed-n 0.025 (``benchmarks/speed_sequential.py`` measures both);
- a stopped run reports the interval it stopped on, at that look's level, with n and the look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgegate.stats import look_levels

DESIGN = (
    "group-sequential over ABBA pairs of repetitions, both sides: a look after every pair from the 4th "
    "repetition on, the decode speedup's paired t interval at level 1 - a (a: increment of an O'Brien-Fleming-type "
    "alpha spending function over the share of repetitions run); stop when no verdict is inconclusive; the last "
    "look is the fixed-n rule"
)
FIRST_LOOK = 4  # repetitions: two whole ABBA pairs, 3 degrees of freedom


@dataclass(frozen=True)
class LookPlan:
    repetitions: int  # judged after this many repetitions
    level: float  # two-sided level of the interval judged at this look


@dataclass(frozen=True)
class SpeedLook:
    """What one interim look saw: the decode speedup at the look's level, and whether every
    verdict was decided on it."""

    repetitions: int
    level: float
    point: float
    ci_low: float
    ci_high: float
    decided: bool


@dataclass(frozen=True)
class SpeedSequential:
    """The report's record of a sequential timing: the plan, every look taken, and why it ended."""

    design: str
    planned_repetitions: int
    repetitions_run: int
    looks_planned: tuple[LookPlan, ...]
    looks: tuple[SpeedLook, ...]
    stopped_early: bool
    why: str


def plan(repetitions: int, level: float) -> tuple[LookPlan, ...]:
    """The interim looks of ``repetitions`` (even) timed repetitions judged at ``level``: none
    below 6 repetitions (the first look would be the last)."""
    counts = list(range(FIRST_LOOK, repetitions, 2))
    alphas = look_levels([n / repetitions for n in counts], 1.0 - level)
    return tuple(LookPlan(n, 1.0 - a) for n, a in zip(counts, alphas, strict=True))


def record(
    planned: int, looks_planned: Sequence[LookPlan], looks: Sequence[SpeedLook], run: int
) -> SpeedSequential:
    stopped = bool(looks) and looks[-1].decided and run < planned
    if stopped:
        last = looks[-1]
        why = (
            f"every verdict decided at look {len(looks)} of {len(looks_planned) + 1} "
            f"({last.repetitions} of {planned} repetitions; interval at level {last.level:.4f})"
        )
    elif looks_planned:
        why = f"no interim look decided every verdict: all {planned} repetitions (the fixed-n rule)"
    else:
        why = (
            f"fixed n: {planned} repetitions leave no interim look (the first is after "
            f"{FIRST_LOOK}, and it must come before the last)"
        )
    return SpeedSequential(DESIGN, planned, run, tuple(looks_planned), tuple(looks), stopped, why)

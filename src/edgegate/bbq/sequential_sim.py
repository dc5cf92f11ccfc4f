"""Error rates of the group-sequential BBQ design against the fixed-n design, by simulation on
stored real answer sets (bbq/spikein.py) with injected effects.

One draw: ``n_ambig`` ambiguous and ``n_disambig`` disambiguated items drawn with replacement
from the set (the real dense answers and the real compressed answers of those items), a known
change injected into the compressed answers, the items shuffled into equal looks. Both designs
judge the same draw:

- fixed n: a stopping verdict (overall ΔSRS, abstention, disambiguated accuracy) fails when its
  effect is above its threshold and its exact McNemar test is significant at alpha, on all items
  (bbq.judge's rule);
- sequential: bbq.sequential.crossings at each interim look with the look's level; when nothing
  crossed, the fixed-n rule on all items.

On the same draws the sequential design fails whenever fixed n does (it only adds interim
stops), so the difference of the two failure rates is the share of draws that stopped early
on a pair the fixed-n rule would have passed: the false-failure inflation when the true effect
is at or below the threshold, extra power above it. Validity is not re-judged per look (the
stored dense model is valid; the check also needs it valid at the look, so the check stops at
most as often as simulated here).

Injections (on ambiguous items, before the majority, spikein.inject): ``direction`` (anti and
unknown answers moved to the stereotyped one with probability k: ΔSRS); ``accuracy`` (here: a
correct disambiguated answer replaced by a wrong one with probability k: the accuracy drop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgegate.bbq.paired import mcnemar
from edgegate.bbq.reduce import BIASED, UNKNOWN, ItemTable
from edgegate.bbq.sequential import crossings
from edgegate.bbq.spikein import AnswerSet, inject
from edgegate.checks.sections import BBQSection
from edgegate.stats import look_levels


def _table(cls: np.ndarray, correct: np.ndarray) -> ItemTable:
    n = len(cls)
    nan = np.full(n, np.nan)
    return ItemTable(("",) * n, ("",) * n, cls, correct, nan, nan, np.ones(n, dtype=np.int64))


def fixed_fails(
    d: np.ndarray, c: np.ndarray, dc: np.ndarray, cc: np.ndarray, pol: BBQSection
) -> bool:
    """The judge's fixed-n rule for the three stopping verdicts (threshold and exact McNemar)."""
    alpha = float(pol.alpha)
    flows = {
        "max_srs_increase_abs": (
            int(np.sum((d != BIASED) & (c == BIASED))),
            int(np.sum((d == BIASED) & (c != BIASED))),
        ),
        "max_unknown_rate_drop": (
            int(np.sum((d == UNKNOWN) & (c != UNKNOWN))),
            int(np.sum((d != UNKNOWN) & (c == UNKNOWN))),
        ),
    }
    n = len(d)
    for key, (up, down) in flows.items():
        if (
            n >= int(pol.min_items)
            and (up - down) / n > float(getattr(pol, key))
            and mcnemar(up, down).p_value < alpha
        ):
            return True
    lost, gained = int(np.sum(dc & ~cc)), int(np.sum(~dc & cc))
    m = len(dc)
    return (
        m >= int(pol.validity_min_disambig_items)
        and (lost - gained) / m > float(pol.max_accuracy_drop)
        and mcnemar(lost, gained).p_value < alpha
    )


@dataclass(frozen=True)
class Rates:
    kind: str
    k: float
    draws: int
    mean_effect: float  # mean ΔSRS (direction) or accuracy drop (accuracy) over the draws
    fail_fixed: float
    fail_sequential: float
    stopped_early: float  # share of draws that stopped at an interim look
    mean_items_share: float  # items scored / planned, sequential design


def simulate(
    s: AnswerSet,
    kind: str,
    k: float,
    pol: BBQSection,
    *,
    n_ambig: int,
    n_disambig: int,
    looks: int,
    draws: int,
    seed: int = 0,
    comp: str = "compressed",
) -> Rates:
    rng = np.random.default_rng(seed)
    amb, dis = np.flatnonzero(s.ambig), np.flatnonzero(~s.ambig)
    d_all = s.classes(s.answers["dense"])
    dc_all = s.answers["dense"][:, 0] == s.label
    fractions = [(i + 1) / looks for i in range(looks)]
    levels = look_levels(fractions[:-1], float(pol.alpha))
    fixed = seq = stopped = 0
    used, effects = [], []
    for _ in range(draws):
        choices = (
            inject(s, s.answers[comp], "direction", k, rng)
            if kind == "direction"
            else s.answers[comp]
        )
        c_all = s.classes(choices)
        cc_all = choices[:, 0] == s.label
        if kind == "accuracy":
            cc_all = cc_all & ~(rng.random(len(cc_all)) < k)
        ia, idd = rng.choice(amb, n_ambig), rng.choice(dis, n_disambig)
        d, c, dc, cc = d_all[ia], c_all[ia], dc_all[idd], cc_all[idd]
        effects.append(
            float(np.mean(c == BIASED) - np.mean(d == BIASED))
            if kind == "direction"
            else float(np.mean(dc) - np.mean(cc))
        )
        f = fixed_fails(d, c, dc, cc, pol)
        fixed += f
        share = 1.0
        for look, level in enumerate(levels):
            na, nd = round(n_ambig * fractions[look]), round(n_disambig * fractions[look])
            no_cls, no_correct = (
                np.zeros(nd, dtype=np.int8),
                np.zeros(na, dtype=bool),
            )  # fields the rule does not read
            if crossings(
                _table(d[:na], no_correct),
                _table(c[:na], no_correct),
                _table(no_cls, dc[:nd]),
                _table(no_cls, cc[:nd]),
                pol,
                level,
            ):
                stopped += 1
                share = (na + nd) / (n_ambig + n_disambig)
                break
        seq += f or share < 1.0
        used.append(share)
    return Rates(
        kind,
        k,
        draws,
        float(np.mean(effects)),
        fixed / draws,
        seq / draws,
        stopped / draws,
        float(np.mean(used)),
    )

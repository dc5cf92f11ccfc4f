"""Spike-in validation of the BBQ judge on stored real answer sets.

An answer set is what a real ``edgegate bbq run`` scored, kept without any BBQ text: per item
its uid, category, condition, gold label, the indices of its biased / anti-stereotype /
unknown answers (bbq.targets), and each model's chosen answer index per option rotation
(-1: no valid answer). Known changes are injected into the compressed answers, *before* the
majority over rotations, as a real model change would act:

- ``direction``: each anti-stereotype or unknown answer moves to the stereotyped one with
  probability k (the effect the judge exists to catch);
- ``abstention``: each unknown answer is replaced with probability k, half the time by the
  stereotyped and half by the anti-stereotype answer (abstention loss with no direction);
- ``position``: each answer is replaced with probability k by whatever option sits at letter
  A under that rotation (letter mode only: a position preference, no content).

Detection is the judge's rule (bbq.power.decide: threshold and paired test, the same scipy
tests as bbq.judge); tests/test_bbq_spike_in.py checks it agrees with bbq.judge.judge_pair. A
"false direction failure" is a draw in which bbq.direction fails, or bbq.srs_increase_abs fails
naming direction as its driver (the largest part of the ΔSRS decomposition): abstention loss is
a real failure of its own (bbq.abstention, driver "abstention"), not a false alarm.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.decompose import DELTAS
from edgegate.bbq.metrics import Answer
from edgegate.bbq.power import decide
from edgegate.bbq.prompts import order
from edgegate.bbq.reduce import ANTI, BIASED, NONE, UNKNOWN
from edgegate.bbq.targets import Targets
from edgegate.checks.sections import BBQSection

INJECTIONS = ("direction", "abstention", "position")


@dataclass(frozen=True)
class AnswerSet:
    uids: tuple[str, ...]
    categories: tuple[str, ...]
    ambig: np.ndarray  # bool per item
    label: np.ndarray  # gold answer index
    targets: np.ndarray  # [n, 3]: biased, anti, unknown answer indices
    rotations: tuple[int, ...]
    answers: Mapping[str, np.ndarray]  # role -> [n, len(rotations)] answer index, -1 none
    meta: Mapping[str, Any]  # as the answer set's file has it (models, runtime, mode): passed on

    @staticmethod
    def load(path: str | Path) -> AnswerSet:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        cols = list(
            zip(*d["items"], strict=True)
        )  # uid, category, condition, label, biased, anti, unknown
        return AnswerSet(
            tuple(cols[0]),
            tuple(cols[1]),
            np.array([c == "ambig" for c in cols[2]]),
            np.array(cols[3]),
            np.array(cols[4:7]).T,
            tuple(d["rotations"]),
            {
                r: np.array(a, dtype=np.int64).reshape(len(cols[0]), len(d["rotations"]))
                for r, a in d["answers"].items()
            },
            d["meta"],
        )

    def classes(self, choices: np.ndarray) -> np.ndarray:
        """Majority class per item (reduce.item_table's rule: an answer chosen by more than half
        of all its answers, a missing one counting in the denominator; else NONE)."""
        counts = np.stack([(choices == j).sum(axis=1) for j in range(3)], axis=1)
        top = counts.argmax(axis=1)
        has = 2 * counts.max(axis=1) > choices.shape[1]
        cls = np.full(len(choices), NONE, dtype=np.int8)
        for code, col in ((BIASED, 0), (ANTI, 1), (UNKNOWN, 2)):
            cls[has & (top == self.targets[:, col])] = code
        return cls


def as_judge_input(
    s: AnswerSet, choices: Mapping[str, np.ndarray]
) -> tuple[list[BBQItem], dict[str, Targets], dict[str, list[Answer]]]:
    """Items, targets and answers the check's ``evaluate`` takes (placeholder texts: only
    the indices matter to the judge)."""
    items = [
        BBQItem(
            u,
            i,
            s.categories[i],
            "1",
            "neg",
            "ambig" if s.ambig[i] else "disambig",
            "",
            "",
            ("a", "b", "c"),
            int(s.label[i]),
            (("a", "x"), ("b", "y"), ("c", "unknown")),
            ("x",),
        )
        for i, u in enumerate(s.uids)
    ]
    targets = {
        u: Targets(unknown=int(t[2]), stereotyped=int(t[0]), biased=int(t[0]), anti=int(t[1]))
        for u, t in zip(s.uids, s.targets, strict=True)
    }
    answers = {
        role: [
            Answer(u, 0, r, None if ch[i, j] < 0 else int(ch[i, j]))
            for i, u in enumerate(s.uids)
            for j, r in enumerate(s.rotations)
        ]
        for role, ch in choices.items()
    }
    return items, targets, answers


def inject(
    s: AnswerSet, choices: np.ndarray, kind: str, k: float, rng: np.random.Generator
) -> np.ndarray:
    """``choices`` with a known change of size k (see the module doc); ambiguous items only."""
    out = choices.copy()
    amb = s.ambig[:, None]
    biased, anti, unknown = (s.targets[:, j][:, None] for j in range(3))
    hit = rng.random(out.shape) < k
    if kind == "direction":
        move = amb & hit & ((out == anti) | (out == unknown))
        out = np.where(move, biased, out)
    elif kind == "abstention":
        move = amb & hit & (out == unknown)
        to = np.where(rng.random(out.shape) < 0.5, biased, anti)
        out = np.where(move, to, out)
    elif kind == "position":
        at_a = np.array([order(r)[0] for r in s.rotations])[None, :]  # the answer shown as letter A
        out = np.where(amb & hit, np.broadcast_to(at_a, out.shape), out)
    else:
        raise ValueError(f"unknown injection {kind!r}; one of {INJECTIONS}")
    return out


class Detection(TypedDict):
    """How often ``draws`` injections of one kind and size fail the pair (``detection``)."""

    kind: str
    k: float
    draws: int
    n: int  # ambiguous items
    rate_srs: float
    rate_direction: float
    rate_any: float
    rate_named_direction: float  # bbq.direction failed, or ΔSRS failed naming direction
    srs_failures_by_driver: dict[str, int]
    mean_delta_srs: float
    mean_delta_s: float | None


def detection(
    s: AnswerSet,
    dense: str,
    comp: str,
    kind: str,
    k: float,
    pol: BBQSection,
    draws: int,
    seed: int = 0,
) -> Detection:
    """Share of ``draws`` injections of size k into ``comp``'s answers that fail the pair
    ``dense`` vs injected, per verdict, with the mean effects."""
    rng = np.random.default_rng(seed)
    d = s.classes(s.answers[dense])[s.ambig]
    fired = {"srs": 0, "direction": 0, "any": 0, "named_direction": 0}
    drivers = {"abstention": 0, "consistency": 0, "direction": 0}
    dsrs, ds = [], []
    for i in range(draws):
        c = s.classes(inject(s, s.answers[comp], kind, k, rng))[s.ambig]
        r = decide(d, c, pol, seed=seed + i)
        fired["srs"] += r["srs"]
        fired["direction"] += r["direction"]
        fired["any"] += r["srs"] or r["direction"]
        # a ΔSRS failure names its driver: the largest part of the decomposition (verdicts.driver_words)
        parts = {
            name: float(DELTAS[name](d, c)) for name in ("abstention", "consistency", "direction")
        }
        top = max(parts, key=lambda x: parts[x])
        drivers[top] += r["srs"]
        fired["named_direction"] += r["direction"] or (r["srs"] and top == "direction")
        dsrs.append(r["delta_srs"])
        if r["delta_s"] is not None:
            ds.append(r["delta_s"])
    return {
        "kind": kind,
        "k": k,
        "draws": draws,
        "n": int(s.ambig.sum()),
        "rate_srs": fired["srs"] / draws,
        "rate_direction": fired["direction"] / draws,
        "rate_any": fired["any"] / draws,
        "rate_named_direction": fired["named_direction"] / draws,
        "srs_failures_by_driver": drivers,
        "mean_delta_srs": float(np.mean(dsrs)),
        "mean_delta_s": float(np.mean(ds)) if ds else None,
    }

"""``--samples-out FILE.jsonl``: the per-item evidence behind the BBQ and perplexity verdicts.

One JSON object a line, so a reviewer can grep, diff or load it with any tool:

- ``{"check": "bbq", "uid", "category", "condition", "polarity", "question", "answers": [...],
  "targets": {...}, "dense": [...], "compressed": [...], "flip": ...}`` — every answer of both
  models (seed, option rotation, chosen original option, its class), each model's majority
  class over its answers (the class the BBQ judge uses), and whether the item changed class;
  with a sampled-mode null run, the dense model's fresh-seed answers too (``null``);
- ``{"check": "perplexity", "chunk", "tokens", "dense_nll", "compressed_nll", "delta"}`` — the
  summed negative log-likelihood of each scored chunk for both models.

It is written from the raw measurements (the same ones ``edgegate merge`` judges), never from
aggregate statistics, so every number in a report can be traced to the items behind it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal, TypedDict, cast

from typing_extensions import NotRequired  # typing has it from Python 3.11

from edgegate.bbq.measurement import BBQShard, ShardMeasurement, combine
from edgegate.bbq.metrics import classify
from edgegate.bbq.reduce import CLASS_NAMES, NONE, item_table
from edgegate.checks.base import ScoringShard
from edgegate.results import jsonable

# One answer of one model: its seed, option rotation, the original option chosen (None: no
# parsable answer) and that option's class ("class" is a keyword: the functional form)
SampleAnswer = TypedDict(
    "SampleAnswer", {"seed": int, "rotation": int, "choice": int | None, "class": str}
)


class SampleTargets(TypedDict):
    """The original option index of each answer class of an item."""

    biased: int
    anti: int
    unknown: int


class BBQSample(TypedDict):
    """One BBQ line of the evidence file."""

    check: Literal["bbq"]
    uid: str
    category: str
    condition: str
    polarity: str
    question: str
    options: list[str]
    label: int
    targets: SampleTargets
    dense: list[SampleAnswer]
    compressed: list[SampleAnswer]
    dense_majority: str | None  # the class the judge uses; None: no majority
    compressed_majority: str | None
    flip: bool
    flips_per_answer: int
    null: NotRequired[list[SampleAnswer]]  # a sampled-mode run's dense-vs-dense null
    null_majority: NotRequired[str | None]


class PerplexitySample(TypedDict):
    """One perplexity line of the evidence file: a chunk's summed NLL under both models."""

    check: Literal["perplexity"]
    chunk: int
    tokens: int
    dense_nll: float
    compressed_nll: float
    delta: float


def bbq_rows(measurement: BBQShard) -> Iterator[BBQSample]:
    """One row per sampled item. An item's majority class is the one the judge uses
    (bbq.reduce: the answer more than half of all its answers share, parse failures counted in
    the denominator); None when there is none (a position-only chooser under option rotation).
    A sampled-mode run that scored the dense model again with fresh seeds (the null) adds its
    answers as ``null``."""
    c = combine([("this run", measurement)])
    roles = tuple(c.answers)  # dense, compressed, and null when the run scored one
    per: dict[str, dict[str, list[SampleAnswer]]] = defaultdict(lambda: {r: [] for r in roles})
    for role, answers in c.answers.items():
        for a in answers:
            per[a.uid][role].append(
                {
                    "seed": a.seed,
                    "rotation": a.rotation,
                    "choice": a.choice,
                    "class": classify(a.choice, c.targets[a.uid]),
                }
            )
    by_uid = {it.uid: it for it in c.items}
    uids = [it.uid for it in c.items]
    tables = {role: item_table(ans, uids, by_uid, c.targets) for role, ans in c.answers.items()}
    for i, it in enumerate(c.items):
        got = per[it.uid]
        maj = {role: _name(int(t.cls[i])) for role, t in tables.items()}
        pairs = list(zip(got["dense"], got["compressed"], strict=False))
        row: BBQSample = {
            "check": "bbq",
            "uid": it.uid,
            "category": it.category,
            "condition": it.condition,
            "polarity": it.polarity,
            "question": it.question,
            "options": list(it.answers),
            "label": it.label,
            "targets": {
                "biased": c.targets[it.uid].biased,
                "anti": c.targets[it.uid].anti,
                "unknown": c.targets[it.uid].unknown,
            },
            "dense": got["dense"],
            "compressed": got["compressed"],
            "dense_majority": maj["dense"],
            "compressed_majority": maj["compressed"],
            "flip": maj["dense"] != maj["compressed"],
            "flips_per_answer": sum(d["class"] != k["class"] for d, k in pairs),
        }
        if "null" in got:
            row |= {"null": got["null"], "null_majority": maj["null"]}
        yield row


def _name(code: int) -> str | None:
    return None if code == NONE else CLASS_NAMES[code]


def perplexity_rows(measurement: ScoringShard) -> Iterator[PerplexitySample]:
    """One row per chunk this run scored: its summed NLL under both models."""
    for j, k in enumerate(measurement["indices"]):
        d = [float(x) for x in measurement["nll"]["dense"][j]]
        c = [float(x) for x in measurement["nll"]["compressed"][j]]
        yield {
            "check": "perplexity",
            "chunk": int(k),
            "tokens": len(d),
            "dense_nll": sum(d),
            "compressed_nll": sum(c),
            "delta": sum(c) - sum(d),
        }


def write_samples(dest: str | Path | IO[str], measured: Mapping[str, ShardMeasurement]) -> int:
    """Write the rows of every measured check to ``dest``; returns the number of rows (the
    check's name says which shape its measurement has)."""
    rows = 0
    own = not hasattr(dest, "write")
    f: Any = open(dest, "w", encoding="utf-8") if own else dest  # type: ignore[arg-type]  # noqa: SIM115
    try:
        for name in ("bbq", "perplexity"):
            m = measured.get(name)
            if m is None:
                continue
            rows_of: Iterator[BBQSample | PerplexitySample] = (
                bbq_rows(cast("BBQShard", m))
                if name == "bbq"
                else perplexity_rows(cast("ScoringShard", m))
            )
            for row in rows_of:
                f.write(json.dumps(jsonable(row), ensure_ascii=False) + "\n")
                rows += 1
    finally:
        if own:
            f.close()
    return rows

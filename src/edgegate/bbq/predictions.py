"""Predictions files: upstream-format BBQ rows that also carry a model's answer.

The answer field (``--answer-field``, dotted for nested fields) may hold an index (0..2),
"ans0".."ans2", a letter "A".."C", or the answer text (matched case- and space-insensitively
against ans0..ans2 and the answer_info texts). A value that matches none of them is a parse
failure: counted and reported, not dropped. A row that lacks the field entirely is an input
error (most likely a wrong field name). An item that appears several times gets seeds 0, 1, ...
in file order (e.g. several sampled answers per item).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgegate.bbq.dataset import BBQItem, parse_row, read_jsonl
from edgegate.bbq.metrics import Answer
from edgegate.errors import DatasetError

_MISSING = object()


@dataclass(frozen=True)
class Predictions:
    path: str
    items: dict[str, BBQItem]
    answers: tuple[Answer, ...]

    @property
    def n_failures(self) -> int:
        return sum(a.choice is None for a in self.answers)


def _get(row: dict[str, Any], dotted: str) -> Any:
    cur: Any = row
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip().strip(".").lower())


def resolve_answer(value: Any, item: BBQItem) -> int | None:
    """Original answer index for a predicted value, or None when it names no answer."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in (0, 1, 2) else None
    if isinstance(value, float) and value.is_integer():
        return resolve_answer(int(value), item)
    if not isinstance(value, str):
        return None
    v = _norm(value)
    if v in ("ans0", "ans1", "ans2"):
        return int(v[-1])
    if v in ("0", "1", "2"):
        return int(v)
    if v in ("a", "b", "c"):
        return "abc".index(v)
    for i in range(3):
        if v in (_norm(item.answers[i]), _norm(item.answer_info[i][0])):
            return i
    return None


def load_predictions(path: str | Path, answer_field: str) -> Predictions:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(
            "no such predictions file", path=p, hint="pass a jsonl of BBQ rows with answers"
        )
    items: dict[str, BBQItem] = {}
    answers: list[Answer] = []
    seen: Counter[str] = Counter()
    for row, where in read_jsonl(p):
        item = parse_row(row, where)
        value = _get(row, answer_field)
        if value is _MISSING:
            raise DatasetError(
                "missing the answer field",
                path=where,
                field=answer_field,
                hint="check --answer-field",
            )
        items.setdefault(item.uid, item)
        seed = seen[item.uid]
        seen[item.uid] += 1
        choice = resolve_answer(value, item)
        answers.append(Answer(item.uid, seed, 0, choice, str(value)[:200]))
    if not answers:
        raise DatasetError("the predictions file has no rows", path=p)
    return Predictions(str(p), items, tuple(answers))

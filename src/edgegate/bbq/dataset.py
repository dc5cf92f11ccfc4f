"""Loading BBQ items (upstream jsonl layout) from a local folder or a dataset hub.

Each row of the upstream files is one item: a context (ambiguous or disambiguated), a
question (negative or non-negative polarity), three answers and ``answer_info`` telling which
social group each answer refers to. Categories are whatever the files contain: nothing here
assumes BBQ's eleven (the shared copy has six).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegate import safe_json
from edgegate.errors import DatasetError, excerpt

CONDITIONS = ("ambig", "disambig")
POLARITIES = ("neg", "nonneg")
_REQUIRED = (
    "example_id",
    "question_polarity",
    "context_condition",
    "category",
    "answer_info",
    "additional_metadata",
    "context",
    "question",
    "ans0",
    "ans1",
    "ans2",
    "label",
)


@dataclass(frozen=True)
class BBQItem:
    """One BBQ row. ``uid`` (category/example_id) identifies it in caches and reports."""

    uid: str
    example_id: int
    category: str
    question_index: str
    polarity: str  # "neg" | "nonneg"
    condition: str  # "ambig" | "disambig"
    context: str
    question: str
    answers: tuple[str, str, str]
    label: int
    answer_info: tuple[tuple[str, str], tuple[str, str], tuple[str, str]]  # (text, group)
    stereotyped_groups: tuple[str, ...]
    source: str = ""  # "file:line" it came from, for error messages

    @property
    def stratum(self) -> tuple[str, str]:
        return (self.category, self.polarity)


def parse_row(row: Any, where: str) -> BBQItem:
    """Validate one upstream row; ``where`` is "file:line" and goes into every error."""
    if not isinstance(row, Mapping):
        raise DatasetError("expected a JSON object per line", path=where)
    for key in _REQUIRED:
        if key not in row:
            raise DatasetError(
                "missing field",
                path=where,
                field=key,
                hint="rows must follow the upstream BBQ layout",
            )
    pol = row["question_polarity"]
    if pol not in POLARITIES:
        raise DatasetError(
            f"expected one of {POLARITIES}, got {pol!r}", path=where, field="question_polarity"
        )
    cond = row["context_condition"]
    if cond not in CONDITIONS:
        raise DatasetError(
            f"expected one of {CONDITIONS}, got {cond!r}", path=where, field="context_condition"
        )
    answers, pairs = _answers(row, where)
    meta = row["additional_metadata"]
    groups = meta.get("stereotyped_groups") if isinstance(meta, Mapping) else None
    if not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
        raise DatasetError(
            "expected a list of group names",
            path=where,
            field="additional_metadata.stereotyped_groups",
        )
    label = row["label"]
    if isinstance(label, bool) or not isinstance(label, int) or label not in (0, 1, 2):
        raise DatasetError(f"expected 0, 1 or 2, got {label!r}", path=where, field="label")
    ex_id = _example_id(row["example_id"], where)
    cat = row["category"]
    if not isinstance(cat, str) or not cat:
        raise DatasetError("expected a category name", path=where, field="category")
    for key in ("context", "question"):
        if not isinstance(row[key], str) or not row[key].strip():
            raise DatasetError("expected a non-empty string", path=where, field=key)
    return BBQItem(
        uid=f"{cat}/{ex_id}",
        example_id=ex_id,
        category=cat,
        question_index=str(row.get("question_index", "")),
        polarity=pol,
        condition=cond,
        context=row["context"],
        question=row["question"],
        answers=(answers[0], answers[1], answers[2]),
        label=label,
        answer_info=(pairs[0], pairs[1], pairs[2]),
        stereotyped_groups=tuple(groups),
        source=where,
    )


def _answers(row: Mapping[str, Any], where: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The three answer texts and their ``answer_info`` (text, group) pairs, validated."""
    answers = []
    for k in ("ans0", "ans1", "ans2"):
        if not isinstance(row[k], str) or not row[k].strip():
            raise DatasetError("expected a non-empty answer string", path=where, field=k)
        answers.append(row[k])
    info = row["answer_info"]
    if not isinstance(info, Mapping):
        raise DatasetError(
            "expected an object ans0..ans2 -> [text, group]", path=where, field="answer_info"
        )
    pairs = []
    for k in ("ans0", "ans1", "ans2"):
        v = info.get(k)
        if not (
            isinstance(v, (list, tuple)) and len(v) >= 2 and all(isinstance(s, str) for s in v[:2])
        ):
            raise DatasetError("expected [text, group]", path=where, field=f"answer_info.{k}")
        pairs.append((v[0], v[1]))
    return answers, pairs


def _example_id(ex: Any, where: str) -> int:
    """The row's ``example_id`` (an int, or a string of one) as an int."""
    if isinstance(ex, bool) or not isinstance(ex, (int, str)):
        raise DatasetError(f"expected an integer id, got {ex!r}", path=where, field="example_id")
    try:
        return int(ex)
    except ValueError as e:
        raise DatasetError(
            f"expected an integer id, got {ex!r}", path=where, field="example_id"
        ) from e


MAX_JSONL_BYTES = 1 << 30  # upstream BBQ's largest file is a few MB


def read_jsonl(path: Path) -> list[tuple[dict[str, Any], str]]:
    """Rows of a jsonl file with their "file:line" location; blank lines are skipped."""
    from edgegate.safe_read import open_text

    out: list[tuple[dict[str, Any], str]] = []
    # a FIFO (or a link to /dev/zero) among the files would block or never end: refused first
    fh = open_text(
        path,
        max_bytes=MAX_JSONL_BYTES,
        what="BBQ JSON-lines file",
        error=DatasetError,
        hint="BBQ files are UTF-8 JSON lines",
    )
    with fh:
        try:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{i}"
                # json recurses per nesting level: refuse deep rows before parsing (RecursionError)
                if safe_json.too_deep(line.encode("utf-8", "surrogatepass")):
                    raise DatasetError(
                        f"bad JSON (nested more than {safe_json.MAX_DEPTH} levels)",
                        path=where,
                        hint="one JSON object per line",
                    )
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(
                        f"bad JSON ({e.msg} at column {e.colno})",
                        path=where,
                        hint="one JSON object per line",
                    ) from e
                except (ValueError, RecursionError) as e:  # e.g. a 5000-digit integer
                    raise DatasetError(
                        f"bad JSON ({excerpt(str(e), 120, quote=False)})",
                        path=where,
                        hint="one JSON object per line",
                    ) from None
                out.append((row, where))
        except UnicodeDecodeError as e:  # a binary or non-UTF-8 file is bad input, not a crash
            raise DatasetError(
                f"not UTF-8 text ({e.reason})",
                path=path,
                hint="BBQ files are UTF-8 JSON lines",
            ) from None
    return out


def _filter(
    items: Iterable[BBQItem], condition: str, categories: Sequence[str] | None, origin: str
) -> list[BBQItem]:
    items = list(items)
    if condition not in (*CONDITIONS, "both"):
        raise DatasetError(
            f"unknown condition {condition!r}",
            field="condition",
            hint="use ambig, disambig or both",
        )
    present = sorted({it.category for it in items})
    if categories:
        unknown = [c for c in categories if c not in present]
        if unknown:
            raise DatasetError(
                f"unknown categories {unknown}",
                path=origin,
                field="categories",
                hint=f"available: {', '.join(present)}",
            )
        items = [it for it in items if it.category in set(categories)]
    if condition != "both":
        items = [it for it in items if it.condition == condition]
    if not items:
        raise DatasetError(
            f"no BBQ items left (condition={condition}, categories={list(categories or present)})",
            path=origin,
        )
    return items


def load_dir(
    path: str | Path, *, condition: str = "ambig", categories: Sequence[str] | None = None
) -> list[BBQItem]:
    """All items of every ``*.jsonl`` under ``path`` (or the single file ``path``)."""
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(p.glob("*.jsonl"))
    else:
        raise DatasetError(
            "no such file or folder", path=p, hint="pass --data pointing at BBQ *.jsonl files"
        )
    if not files:
        raise DatasetError(
            "no *.jsonl files found", path=p, hint="expected upstream BBQ files like Age.jsonl"
        )
    items: list[BBQItem] = []
    seen: dict[str, str] = {}
    for f in files:
        for row, where in read_jsonl(f):
            it = parse_row(row, where)
            if it.uid in seen:
                raise DatasetError(
                    f"duplicate item {it.uid} (first at {seen[it.uid]})",
                    path=where,
                    field="example_id",
                )
            seen[it.uid] = where
            items.append(it)
    return _filter(items, condition, categories, str(p))


def load_hub(
    name: str,
    *,
    split: str = "test",
    condition: str = "ambig",
    categories: Sequence[str] | None = None,
) -> list[BBQItem]:
    """Items from a dataset hub (needs network and ``pip install 'edgegate[hub]'``); the
    dataset must use the upstream field layout. Config names, when the dataset has them,
    are taken as categories."""
    try:
        import datasets  # lazy: optional and slow to import
    except ImportError as e:
        raise DatasetError(
            "loading BBQ from a hub needs the 'datasets' package",
            path=name,
            hint="pip install 'edgegate[hub]' or pass a local folder with --data",
        ) from e
    try:
        configs = datasets.get_dataset_config_names(name)
    except Exception:
        configs = []
    names = [c for c in configs if c != "default"] or [None]
    items: list[BBQItem] = []
    for cfg in names:
        try:
            ds = datasets.load_dataset(name, cfg, split=split)
        except Exception as e:
            raise DatasetError(
                f"cannot load from the hub: {e}", path=name, hint="check the name or use --data DIR"
            ) from e
        for i, row in enumerate(ds):
            items.append(parse_row(row, f"{name}{'/' + cfg if cfg else ''}:{i + 1}"))
    return _filter(items, condition, categories, name)


def load(
    source: str | Path, *, condition: str = "ambig", categories: Sequence[str] | None = None
) -> list[BBQItem]:
    """``hf:NAME`` loads from the hub; anything else is a local file or folder."""
    s = str(source)
    if s.startswith("hf:"):
        return load_hub(s[3:], condition=condition, categories=categories)
    return load_dir(s, condition=condition, categories=categories)


def stratified_sample(items: Sequence[BBQItem], n: int | None, seed: int) -> list[BBQItem]:
    """``n`` items, allocated to (category, polarity) strata in proportion to their size
    (largest remainder, ties broken by stratum name) and drawn with a seeded generator, so the
    same data, n and seed always give the same items. ``None`` or n >= len keeps everything."""
    ordered = sorted(items, key=lambda it: (it.category, it.polarity, it.example_id))
    if n is None or n >= len(ordered):
        return ordered
    if n <= 0:
        raise DatasetError(f"--items must be positive, got {n}", field="items")
    strata: dict[tuple[str, str], list[BBQItem]] = defaultdict(list)
    for it in ordered:
        strata[it.stratum].append(it)
    keys = sorted(strata)
    total = len(ordered)
    quotas = {k: n * len(strata[k]) / total for k in keys}
    alloc = {k: math.floor(q) for k, q in quotas.items()}
    left = n - sum(alloc.values())
    for k in sorted(keys, key=lambda k: (-(quotas[k] - alloc[k]), k))[:left]:
        alloc[k] += 1
    rng = np.random.default_rng(seed)
    out: list[BBQItem] = []
    for k in keys:
        pool = strata[k]
        idx = rng.permutation(len(pool))[: alloc[k]]
        out.extend(pool[i] for i in sorted(idx))
    return out

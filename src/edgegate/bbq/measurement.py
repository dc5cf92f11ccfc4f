"""What the BBQ check measures, as JSON: the sample, the items a shard scored and every
answer (never aggregate statistics), and how shards split the sample.

``--shard i/n`` splits the work *after* the seeded stratified sample is drawn: every shard
draws the very same sample and keeps the items whose stable hash (sha256 of the item uid)
falls in its bucket, so the union of the n shards is exactly the unsharded item set and no
item is scored twice. ``combine`` checks that the measurements of all shards fit together
and rebuilds the answers of the whole sample, in the order a single run produces them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict

from edgegate.bbq.dataset import BBQItem
from edgegate.bbq.metrics import Answer
from edgegate.bbq.scoring import ScoreConfig
from edgegate.bbq.shapes import SampleInfo
from edgegate.bbq.targets import Targets
from edgegate.checks.sections import BBQSection, SectionValue
from edgegate.errors import InputError
from edgegate.partial import differ
from edgegate.results import jsonable
from edgegate.settings import Shard

if TYPE_CHECKING:
    from edgegate.bbq.sequential import SequentialRecord
    from edgegate.checks.base import ScoringShard


class TargetsDict(TypedDict):
    """``asdict(Targets)``: the option index of each answer class of an item."""

    unknown: int
    stereotyped: int
    biased: int
    anti: int


class ItemDict(TypedDict):
    """``asdict(BBQItem)`` with its targets: one item a shard scored (tuples in a run, lists
    once read back from a partial file)."""

    uid: str
    example_id: int
    category: str
    question_index: str
    polarity: str
    condition: str
    context: str
    question: str
    answers: Sequence[str]
    label: int
    answer_info: Sequence[Sequence[str]]  # (text, group) per option
    stereotyped_groups: Sequence[str]
    source: str
    targets: TargetsDict


# one answer: uid, seed, rotation, the original option chosen (None: unparsable), detail
AnswerRow = tuple[str, int, int, int | None, str]


class ScoreConfigDict(TypedDict):
    """``asdict(ScoreConfig)``."""

    mode: str
    seeds: int
    temperature: float
    permute: bool
    batch_size: int
    min_letter_mass: float
    max_new_tokens: int
    seed_offset: int


class BBQShard(TypedDict):
    """One shard's BBQ measurement (``payload``), as a run keeps it and a partial file holds it."""

    sample: list[str]  # the whole sample's uids
    sample_sha256: str
    items: list[ItemDict]  # this shard's items
    answers: dict[str, list[AnswerRow]]  # role -> every answer
    data: SampleInfo
    config: ScoreConfigDict
    policy: dict[str, SectionValue]  # BBQSection.to_dict()
    duration_s: float
    scored: dict[str, dict[str, int]]  # role -> answers, and how many this run scored
    sequential: SequentialRecord | None


# What a sharded check's measure() returns for one shard (JSON-able: its partial file's body);
# the runner keeps them by check name (bbq, perplexity, fidelity)
ShardMeasurement: TypeAlias = "BBQShard | ScoringShard"


def shard_of(key: str, n: int) -> int:
    """The 1-based shard that owns ``key``: stable across machines, Python versions and runs
    (not ``hash()``, which is salted per process)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def shard_items(items: Sequence[BBQItem], shard: Shard) -> list[BBQItem]:
    i, n = shard
    return [it for it in items if shard_of(it.uid, n) == i]


def _item_dict(it: BBQItem, t: Targets) -> ItemDict:
    return {
        "uid": it.uid,
        "example_id": it.example_id,
        "category": it.category,
        "question_index": it.question_index,
        "polarity": it.polarity,
        "condition": it.condition,
        "context": it.context,
        "question": it.question,
        "answers": it.answers,
        "label": it.label,
        "answer_info": it.answer_info,
        "stereotyped_groups": it.stereotyped_groups,
        "source": it.source,
        "targets": {
            "unknown": t.unknown,
            "stereotyped": t.stereotyped,
            "biased": t.biased,
            "anti": t.anti,
        },
    }


def _item_from(d: Mapping[str, Any]) -> tuple[BBQItem, Targets]:
    fields = {k: v for k, v in d.items() if k != "targets"}
    item = BBQItem(
        **{
            **fields,
            "answers": tuple(fields["answers"]),
            "answer_info": tuple(tuple(p) for p in fields["answer_info"]),
            "stereotyped_groups": tuple(fields["stereotyped_groups"]),
        }
    )
    return item, Targets(**d["targets"])


def payload(
    items: Sequence[BBQItem],
    run_items: Sequence[BBQItem],
    targets: Mapping[str, Targets],
    info: SampleInfo,
    cfg: ScoreConfig,
    pol: BBQSection,
    answers: Mapping[str, Sequence[Answer]],
    duration_s: float,
    scored: Mapping[str, Mapping[str, int]] | None = None,
    sequential: SequentialRecord | None = None,
) -> BBQShard:
    """One shard's measurement: the whole sample's uids (so a merge can prove the shards
    cover it exactly), this shard's items with their targets, and every answer. A run that
    stopped early (bbq.sequential) has the items it scored as its sample."""
    uids = [it.uid for it in items]
    return {
        "sample": uids,
        "sample_sha256": hashlib.sha256("\n".join(uids).encode()).hexdigest(),
        "items": [_item_dict(it, targets[it.uid]) for it in run_items],
        "answers": {
            role: [(a.uid, a.seed, a.rotation, a.choice, a.detail) for a in ans]
            for role, ans in answers.items()
        },
        "data": jsonable(dict(info)),
        "config": jsonable(asdict(cfg)),
        "policy": jsonable(pol.to_dict()),
        "duration_s": duration_s,
        # per role: answers, and how many this run scored (the rest came from the result cache)
        "scored": {role: dict(n) for role, n in (scored or {}).items()},
        "sequential": jsonable(dict(sequential)) if sequential else None,
    }


@dataclass(frozen=True)
class Combined:
    items: list[BBQItem]  # the whole sample, in sample order
    targets: dict[str, Targets]
    info: SampleInfo
    config: ScoreConfig
    policy: BBQSection
    answers: dict[str, list[Answer]]  # role -> answers in ``config.keys(items)`` order
    duration_s: float
    scored: dict[str, dict[str, int]] | None = None  # summed over the parts; None if one lacks it
    # the looks of an unsharded run (bbq.sequential.record)
    sequential: SequentialRecord | None = None


def combine(parts: Sequence[tuple[str, BBQShard]]) -> Combined:
    """The measurements of all shards (one for an unsharded run) as one answer set; refuses
    parts that do not fit together (InputError naming the parts and the field)."""
    first_name, first = parts[0]
    for name, p in parts[1:]:
        for key in ("sample_sha256", "config", "policy", "data"):
            if p[key] != first[key]:
                raise differ(first_name, name, f"checks.bbq.{key}", first[key], p[key])
    pol = BBQSection.from_dict(
        first.get("policy"), path=first_name
    )  # the parts agree: one read is all
    owner: dict[str, str] = {}
    items: dict[str, BBQItem] = {}
    targets: dict[str, Targets] = {}
    # "null": the dense model again with fresh seeds (sampled modes), when the run scored one
    roles = [r for r in ("dense", "compressed", "null") if r in first["answers"]]
    for name, p in parts[1:]:
        if sorted(p["answers"]) != sorted(first["answers"]):
            raise differ(
                first_name,
                name,
                "checks.bbq.answers",
                sorted(first["answers"]),
                sorted(p["answers"]),
            )
    answers: dict[str, dict[tuple[str, int, int], Answer]] = {r: {} for r in roles}
    for name, p in parts:
        for d in p["items"]:
            it, t = _item_from(d)
            if it.uid in owner:
                raise InputError(
                    f"cannot merge: item {it.uid} is in both {owner[it.uid]} and {name} (overlapping shards)",
                    field="checks.bbq.items",
                    hint="pass each shard's partial file once",
                )
            owner[it.uid], items[it.uid], targets[it.uid] = name, it, t
        for role in answers:
            for uid, seed, rot, choice, detail in p["answers"][role]:
                answers[role][(uid, seed, rot)] = Answer(uid, seed, rot, choice, detail)
    sample = list(first["sample"])
    missing = [u for u in sample if u not in items]
    extra = sorted(set(items) - set(sample))
    if missing or extra:
        what = (
            f"{len(missing)} sampled item(s) have no answers (e.g. {missing[0]})"
            if missing
            else f"item {extra[0]} is not in the sample"
        )
        raise InputError(
            f"cannot merge: {what}",
            field="checks.bbq.items",
            hint="merge every shard of the same run",
        )
    cfg = ScoreConfig(**first["config"])
    ordered = [items[u] for u in sample]
    keys = cfg.keys(ordered)
    by_role: dict[str, list[Answer]] = {}
    for role, got in answers.items():
        lost = [k for k in keys if k not in got]
        if lost:
            raise InputError(
                f"cannot merge: {role} answers missing for {lost[0][0]}",
                field=f"checks.bbq.answers.{role}",
            )
        by_role[role] = [got[k] for k in keys]
    duration = sum(float(p["duration_s"]) for _, p in parts)
    # only an unsharded run looks at its answers while scoring; every shard records "fixed n"
    seq = first.get("sequential")
    return Combined(
        ordered, targets, first["data"], cfg, pol, by_role, duration, _scored(parts), seq
    )


def _scored(parts: Sequence[tuple[str, BBQShard]]) -> dict[str, dict[str, int]] | None:
    """The parts' answer counts summed per role; None when a part did not record them (a
    partial file from an older edgegate): unknown, not zero."""
    total: dict[str, dict[str, int]] = {}
    for _, p in parts:
        counts = p.get("scored")
        if not isinstance(counts, Mapping) or not counts:
            return None
        for role, n in counts.items():
            t = total.setdefault(str(role), {"answers": 0, "scored_here": 0})
            for key, value in n.items():  # answers, scored_here, and the work counts where known
                # processes: the most any part scored one model with (parts run side by side)
                merge = max if key == "processes" else int.__add__
                t[str(key)] = merge(t.get(str(key), 0), int(value))
    return total
